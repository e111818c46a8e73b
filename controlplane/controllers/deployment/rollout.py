"""Rollout planning: how many replicas each revision of a Deployment should have next.

Pure functions over `Revision` snapshots, following Kubernetes' deployment controller
(pkg/controller/deployment: rolling.go, recreate.go, sync.go, util/deployment_util.go):
- `strategy_of`: maxSurge rounds up, maxUnavailable rounds down, both 0 -> maxUnavailable 1;
  Recreate has neither.
- `rolling`: one step of a RollingUpdate: first grow the new revision up to
  replicas + maxSurge in total; only when it cannot grow, shrink old revisions, never below
  replicas - maxUnavailable available (unhealthy old replicas go first).
- `recreate`: every old revision to 0; the new one only once the old pods are gone.
- `scale`: a change of `spec.replicas` (or any change while paused): one active revision
  takes it all; several share it in proportion to their size (sync.go's proportional
  scaling, with the max-replicas annotation recording the size the split was made for).

Vocabulary: a revision's `replicas` is its target (ReplicaSet spec.replicas); `available` is how
many of its pods are available now, never more than its target. A plan is a dict
{ReplicaSet name: new target} for the revisions whose target should be (re)written.
Invariants: the functions never look at the clock or the store; the same snapshot always
gives the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import struct_pb2

from pilothouse.v1 import objects_pb2

DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"


@dataclass(frozen=True, slots=True)
class Strategy:
    recreate: bool
    surge: int  # resolved against spec.replicas
    unavailable: int  # resolved, before clamping to spec.replicas

    def max_unavailable(self, replicas: int) -> int:
        """Kubernetes' MaxUnavailable: 0 for Recreate or no replicas, at most `replicas`."""
        if self.recreate or replicas <= 0:
            return 0
        return min(self.unavailable, replicas)


@dataclass(frozen=True, slots=True)
class Revision:
    """One ReplicaSet of a Deployment as the planner sees it."""

    name: str
    number: int
    replicas: int
    available: int
    created: float
    desired_annotation: int | None = None  # deployment.kubernetes.io/desired-replicas
    max_annotation: int | None = None  # deployment.kubernetes.io/max-replicas


Plan = dict[str, int]


def resolve(value: struct_pb2.Value, total: int, *, default: str, round_up: bool) -> int:
    """An int-or-percent against `total` (Kubernetes' GetScaledValueFromIntOrPercent)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return max(int(value.number_value), 0)
    text = value.string_value.strip() if kind == "string_value" else default
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            percent = int(default[:-1])
        exact = total * percent / 100
        return max(math.ceil(exact) if round_up else math.floor(exact), 0)
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def strategy_of(spec: objects_pb2.DeploymentSpec, replicas: int) -> Strategy:
    if spec.strategy.type == "Recreate":
        return Strategy(recreate=True, surge=0, unavailable=0)
    rolling_update = spec.strategy.rolling_update
    surge = resolve(rolling_update.max_surge, replicas, default=DEFAULT_SURGE, round_up=True)
    unavailable = resolve(
        rolling_update.max_unavailable, replicas, default=DEFAULT_UNAVAILABLE, round_up=False
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1  # both zero would never make progress
    return Strategy(recreate=False, surge=surge, unavailable=unavailable)


def _by_age(revisions: Sequence[Revision]) -> list[Revision]:
    return sorted(revisions, key=lambda r: (r.created, r.number, r.name))


def new_replicas(
    *, replicas: int, strategy: Strategy, new: Revision, revisions: Sequence[Revision]
) -> int:
    """The new revision's next target (NewRSNewReplicas); `revisions` includes `new`."""
    if strategy.recreate:
        return replicas
    current = sum(r.replicas for r in revisions)
    max_total = replicas + strategy.surge
    if current >= max_total:
        return new.replicas
    return new.replicas + min(max_total - current, replicas - new.replicas)


def rolling(*, replicas: int, strategy: Strategy, new: Revision, olds: Sequence[Revision]) -> Plan:
    """One step of a RollingUpdate (rolling.go: reconcileNewReplicaSet, then old ones)."""
    if new.replicas > replicas:
        return {new.name: replicas}
    if new.replicas < replicas:
        target = new_replicas(replicas=replicas, strategy=strategy, new=new, revisions=[*olds, new])
        if target != new.replicas:
            return {new.name: target}
    old_total = sum(r.replicas for r in olds)
    if old_total == 0:
        return {}
    min_available = replicas - strategy.max_unavailable(replicas)
    new_unavailable = new.replicas - new.available
    max_scaled_down = old_total + new.replicas - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    sizes = {r.name: r.replicas for r in olds}
    # First the old replicas that are not available anyway (cleanupUnhealthyReplicas).
    cleaned = 0
    for old in _by_age(olds):
        if cleaned >= max_scaled_down:
            break
        unhealthy = old.replicas - old.available
        if old.replicas == 0 or unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        sizes[old.name] -= down
        cleaned += down
    # Then available ones, as far as availability allows (scaleDownOldReplicaSetsForRolling…).
    available = sum(r.available for r in olds) + new.available
    if available > min_available:
        to_scale = available - min_available
        scaled = 0
        for old in _by_age(olds):
            if scaled >= to_scale:
                break
            if sizes[old.name] == 0:
                continue
            down = min(sizes[old.name], to_scale - scaled)
            sizes[old.name] -= down
            scaled += down
    return {r.name: sizes[r.name] for r in olds if sizes[r.name] != r.replicas}


def recreate(
    *, replicas: int, new: Revision | None, olds: Sequence[Revision], old_pods_gone: bool
) -> Plan:
    """One step of Recreate: old revisions to 0; the new one to `replicas` once their pods
    are gone (a missing new revision is then created by the caller)."""
    active = [r for r in olds if r.replicas > 0]
    if active:
        return {r.name: 0 for r in active}
    if not old_pods_gone or new is None:
        return {}
    return {new.name: replicas} if new.replicas != replicas else {}


def find_active_or_latest(new: Revision | None, olds: Sequence[Revision]) -> Revision | None:
    """The only revision with replicas, or the newest if none has any; None if several."""
    if new is None and not olds:
        return None
    newest_first = sorted(olds, key=lambda r: (r.created, r.number, r.name), reverse=True)
    candidates = [*newest_first, new] if new is not None else newest_first
    active = [r for r in candidates if r.replicas > 0]
    if not active:
        return new if new is not None else newest_first[0]
    return active[0] if len(active) == 1 else None


def is_saturated(replicas: int, new: Revision | None) -> bool:
    return (
        new is not None
        and new.replicas == replicas
        and new.desired_annotation == replicas
        and new.available == replicas
    )


def is_scaling_event(replicas: int, revisions: Sequence[Revision]) -> bool:
    """Has `spec.replicas` changed since an active revision was last sized? (isScalingEvent)"""
    return any(
        r.replicas > 0 and r.desired_annotation is not None and r.desired_annotation != replicas
        for r in revisions
    )


def _round_half_away(value: float) -> int:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def _fraction(revision: Revision, *, replicas: int, surge: int, status_replicas: int) -> int:
    """How many replicas `revision` gains (or loses) in proportion (getReplicaSetFraction)."""
    if replicas == 0:
        return -revision.replicas
    deployment_max = replicas + surge
    annotated = revision.max_annotation if revision.max_annotation is not None else status_replicas
    if annotated <= 0:
        return 0
    return _round_half_away(revision.replicas * deployment_max / annotated) - revision.replicas


def scale(
    *,
    replicas: int,
    strategy: Strategy,
    new: Revision | None,
    olds: Sequence[Revision],
    status_replicas: int,
) -> Plan:
    """Targets after a scaling event (sync.go `scale`). Every revision named in the plan is
    (re)sized and gets fresh desired/max annotations, even if its size stays."""
    single = find_active_or_latest(new, olds)
    if single is not None:
        return {single.name: replicas}
    if is_saturated(replicas, new):
        return {r.name: 0 for r in olds if r.replicas > 0}
    if strategy.recreate:
        return {}
    active = [r for r in (*olds, new) if r is not None and r.replicas > 0]
    allowed = replicas + strategy.surge if replicas > 0 else 0
    to_add = allowed - sum(r.replicas for r in active)
    if to_add > 0:  # larger first; newer first among equals
        active.sort(key=lambda r: (-r.replicas, -r.created, -r.number))
    elif to_add < 0:  # larger first; older first among equals
        active.sort(key=lambda r: (-r.replicas, r.created, r.number))
    sizes: Plan = {}
    added = 0
    for revision in active:
        proportion = 0
        if to_add != 0 and to_add != added:
            fraction = _fraction(
                revision, replicas=replicas, surge=strategy.surge, status_replicas=status_replicas
            )
            allowed_left = to_add - added
            proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
        sizes[revision.name] = revision.replicas + proportion
        added += proportion
    if active and to_add != 0:
        first = active[0].name
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes

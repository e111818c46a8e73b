"""The HorizontalPodAutoscaler's arithmetic, as Kubernetes' podautoscaler computes it: pure
functions over plain data, no I/O.

Vocabulary:
- usage ratio: the metric's current value over its target (utilization: the pods' summed
  usage over their summed requests, in percent, over the target percent; average value: the
  usage per pod over the target amount).
- recommendation: the replica count one evaluation proposes, before stabilization and the
  scaling policies.

The steps (`replica_calculator.go`, `horizontal.go`):
1. per metric: the pods that have a sample (running, not being deleted) give the ratio; when
   it is within `tolerance` of 1 the count stays; pods without a sample count as using 0
   when scaling up and 100 % of the target when scaling down, and unready pods as 0 when
   scaling up (CPU), and if that flips the direction or lands within tolerance, the count
   stays; else `ceil(ratio * pods)`;
2. the largest proposal of all metrics wins;
3. stabilization: scaling down uses the highest recommendation of the last scale-down window
   (default 300 s), scaling up the lowest of the scale-up window (default 0 s);
4. the policies bound the change within each policy's period (default up: the larger of
   +100 % and +4 pods per 15 s; down: -100 % per 15 s);
5. min and max replicas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class PodSample:
    """One pod's use of a resource and its request (millicores or bytes)."""

    usage: float
    request: float
    ready: bool = True


@dataclass(frozen=True, slots=True)
class Proposal:
    replicas: int
    # The metric's current value: utilization percent, or the average per pod.
    current: float
    # The pods with a sample that the value is taken over.
    measured: int


def utilization_proposal(
    *,
    current_replicas: int,
    samples: Sequence[PodSample],
    missing: int,
    target_percent: float,
    tolerance: float = DEFAULT_TOLERANCE,
    unready_count_zero: bool = True,
) -> Proposal:
    """Replicas for a Utilization target; `missing`: pods that should have a sample and have
    none. ValueError when no pod has a sample or a request."""
    ready = [s for s in samples if s.ready or not unready_count_zero]
    unready = [s for s in samples if not (s.ready or not unready_count_zero)]
    if not ready:
        raise ValueError("no pod of the target has a usage sample yet")
    requests = sum(s.request for s in ready)
    if requests <= 0:
        raise ValueError("the target's pods request none of this resource")
    usage = sum(s.usage for s in ready)
    utilization = usage * 100.0 / requests
    ratio = utilization / target_percent
    scale_up = ratio > 1.0
    if not missing and not unready:
        if abs(1.0 - ratio) <= tolerance:
            return Proposal(current_replicas, utilization, len(ready))
        return Proposal(math.ceil(ratio * len(ready)), utilization, len(ready))
    average_request = requests / len(ready)
    if missing:
        # Missing pods: 0 when scaling up, 100 % of their request when scaling down.
        filler = 0.0 if scale_up else average_request
        usage += filler * missing
        requests += average_request * missing
    if scale_up and unready:
        requests += sum(s.request for s in unready)  # unready pods count as using nothing
    new_ratio = (usage * 100.0 / requests) / target_percent
    if abs(1.0 - new_ratio) <= tolerance or (new_ratio > 1.0) != scale_up:
        return Proposal(current_replicas, utilization, len(ready))
    counted = len(ready) + missing + (len(unready) if scale_up else 0)
    replicas = math.ceil(new_ratio * counted)
    if (scale_up and replicas < current_replicas) or (not scale_up and replicas > current_replicas):
        return Proposal(current_replicas, utilization, len(ready))
    return Proposal(replicas, utilization, len(ready))


def average_value_proposal(
    *,
    current_replicas: int,
    samples: Sequence[PodSample],
    target: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Proposal:
    """Replicas for an AverageValue target (usage per pod): Kubernetes divides the total
    usage by the target over the current replica count."""
    if not samples:
        raise ValueError("no pod of the target has a usage sample yet")
    total = sum(s.usage for s in samples)
    average = total / len(samples)
    ratio = total / (target * max(current_replicas, 1))
    if abs(1.0 - ratio) <= tolerance:
        return Proposal(current_replicas, average, len(samples))
    return Proposal(math.ceil(total / target), average, len(samples))


@dataclass(frozen=True, slots=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class Rules:
    stabilization_seconds: float
    select: str  # "Max", "Min", "Disabled"
    policies: tuple[Policy, ...]


DEFAULT_SCALE_UP = Rules(0.0, "Max", (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))


def default_scale_down(window: float) -> Rules:
    return Rules(window, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    at: float
    change: int  # + up, - down


def stabilized(
    recommendation: int,
    *,
    current: int,
    history: Sequence[Recommendation],
    now: float,
    up: Rules,
    down: Rules,
) -> int:
    """The recommendation after the stabilization windows (history holds earlier ones)."""
    up_floor = recommendation
    down_ceiling = recommendation
    for past in history:
        if now - past.at <= up.stabilization_seconds:
            up_floor = min(up_floor, past.replicas)
        if now - past.at <= down.stabilization_seconds:
            down_ceiling = max(down_ceiling, past.replicas)
    if recommendation > current:
        return max(current, up_floor)
    if recommendation < current:
        return min(current, down_ceiling)
    return current


def limited(
    desired: int, *, current: int, events: Sequence[ScaleEvent], now: float, up: Rules, down: Rules
) -> int:
    """`desired` bounded by the scaling policies (changes made within each policy's period)."""
    if desired > current:
        if up.select == "Disabled":
            return current
        bounds = []
        for policy in up.policies:
            added = sum(
                e.change for e in events if e.change > 0 and now - e.at < policy.period_seconds
            )
            base = current - added
            if policy.kind == "Pods":
                bounds.append(base + policy.value)
            else:
                bounds.append(math.ceil(base * (1 + policy.value / 100.0)))
        if not bounds:
            return desired
        bound = min(bounds) if up.select == "Min" else max(bounds)
        return min(desired, max(bound, current))
    if desired < current:
        if down.select == "Disabled":
            return current
        bounds = []
        for policy in down.policies:
            removed = -sum(
                e.change for e in events if e.change < 0 and now - e.at < policy.period_seconds
            )
            base = current + removed
            if policy.kind == "Pods":
                bounds.append(base - policy.value)
            else:
                bounds.append(math.ceil(base * (1 - policy.value / 100.0)))
        if not bounds:
            return desired
        bound = max(bounds) if down.select == "Min" else min(bounds)
        return max(desired, min(bound, current))
    return desired

"""Where a DaemonSet's pods belong and how an update moves them (pure).

Vocabulary:
- eligible node: one whose labels match the template's nodeSelector and whose NoSchedule and
  NoExecute taints the pod tolerates (its tolerations plus `taints.DAEMON_TOLERATIONS`: a
  cordoned or NotReady node stays eligible, as in Kubernetes);
- node pods: the DaemonSet's active pods bound to one node, oldest first; new pods are those
  of the current revision (their `controller-revision-hash`), the rest are old;
- available: Ready for minReadySeconds.

`plan` returns one step: nodes that need a pod of the current revision, and pods to delete
(on ineligible or vanished nodes, duplicates, and old pods the update strategy replaces now).

Update rules (apps/v1): RollingUpdate without surge deletes old pods so that at most
maxUnavailable nodes are without an available pod, and a node without a pod gets a new one;
with maxSurge a new pod starts beside an available old one (at most maxSurge at once) and the
old one goes once the new one is available. OnDelete replaces only what was deleted.
Percentages are of the eligible nodes, rounded up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf.struct_pb2 import Value

from controlplane.objects.taints import DAEMON_TOLERATIONS, untolerated
from pilothouse.v1 import objects_pb2


def eligible(node: objects_pb2.Node, spec: objects_pb2.PodSpec) -> bool:
    labels = node.metadata.labels
    if any(labels.get(k) != v for k, v in spec.node_selector.items()):
        return False
    return untolerated(node.spec.taints, [*spec.tolerations, *DAEMON_TOLERATIONS]) is None


def scaled(value: Value, total: int, *, default: int) -> int:
    """An IntOrString (3 or "25%") of `total`, rounded up."""
    if value.HasField("string_value") and value.string_value.endswith("%"):
        try:
            percent = int(value.string_value[:-1])
        except ValueError:
            return default
        return math.ceil(percent * total / 100)
    if value.HasField("number_value"):
        return int(value.number_value)
    return default


@dataclass(slots=True)
class Step:
    create_on: list[str] = field(default_factory=list)  # node names
    delete: list[objects_pb2.Pod] = field(default_factory=list)


def plan(
    *,
    strategy: objects_pb2.DaemonSetUpdateStrategy,
    eligible_nodes: Sequence[str],
    pods_by_node: Mapping[str, Sequence[objects_pb2.Pod]],
    is_new: Callable[[objects_pb2.Pod], bool],
    is_available: Callable[[objects_pb2.Pod], bool],
) -> Step:
    step = Step()
    wanted = set(eligible_nodes)
    for node, pods in pods_by_node.items():
        if node not in wanted:
            step.delete.extend(pods)
    rolling = strategy.type != "OnDelete"
    total = len(eligible_nodes)
    max_surge = scaled(strategy.rolling_update.max_surge, total, default=0) if rolling else 0
    max_unavailable = (
        scaled(strategy.rolling_update.max_unavailable, total, default=1) if rolling else 0
    )
    if rolling and max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    unavailable = 0
    surging = 0
    replaceable: list[objects_pb2.Pod] = []  # old pods the strategy may take now, one a node
    surge_candidates: list[str] = []
    for node in eligible_nodes:
        pods = list(pods_by_node.get(node, ()))
        if not pods:
            step.create_on.append(node)
            unavailable += 1
            continue
        new = [p for p in pods if is_new(p)]
        old = [p for p in pods if not is_new(p)]
        if new:
            keep = new[0]
            step.delete.extend(new[1:])
            if old and (is_available(keep) or max_surge == 0):
                step.delete.extend(old)
            elif old:
                surging += 1
            if not is_available(keep):
                unavailable += 1
            continue
        keep = old[0]
        step.delete.extend(old[1:])
        if not rolling:
            continue  # OnDelete: an old pod stays until someone deletes it
        if not is_available(keep):
            unavailable += 1
            replaceable.insert(0, keep)  # broken anyway: replace it first
        elif max_surge > 0:
            surge_candidates.append(node)
        else:
            replaceable.append(keep)
    if rolling:
        for node in surge_candidates[: max(max_surge - surging, 0)]:
            step.create_on.append(node)
        budget = max_unavailable - unavailable
        for pod in replaceable:
            if not is_available(pod):
                step.delete.append(pod)  # it counts as unavailable already
            elif budget > 0 and max_surge == 0:
                step.delete.append(pod)
                budget -= 1
    return step

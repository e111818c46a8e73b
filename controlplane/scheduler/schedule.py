"""The scheduling decision: one pod, one snapshot, one answer.

Invariants: `schedule` is a pure function. It returns `Placement` naming the best feasible node
(highest total score; ties go to the alphabetically first node name, so the same inputs always
give the same node) or `Unschedulable` whose message is Kubernetes' own
("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient
memory."): every rejected node's reasons counted, the "count reason" strings sorted as strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.objects.nodeselectors import matches as node_matches
from controlplane.scheduler import affinity, scores
from controlplane.scheduler.filters import Reason, Rejection, first_rejection
from controlplane.scheduler.snapshot import NodeInfo, Pod, Snapshot, demand_of
from pilothouse.v1.objects_pb2 import NodeSelector


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    score: float


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No node can take the pod; `rejections` says why, node by node."""

    node_count: int
    rejections: Mapping[str, Rejection]

    @property
    def message(self) -> str:
        histogram: Counter[str] = Counter()
        for rejection in self.rejections.values():
            histogram.update(rejection.summaries())
        entries = sorted(f"{count} {summary}" for summary, count in histogram.items())
        if self.node_count == 0:
            return "no nodes available to schedule pods"
        if not entries:
            return f"0/{self.node_count} nodes are available."
        return f"0/{self.node_count} nodes are available: {', '.join(entries)}."


Decision = Placement | Unschedulable
# What a pod prefers (node and pod affinity, ScheduleAnyway spread) weighs as Kubernetes
# weighs NodeAffinity and InterPodAffinity against NodeResourcesFit: twice.
AFFINITY_WEIGHT = 2


def schedule(snapshot: Snapshot, pod: Pod, *, constraints: Sequence[NodeSelector] = ()) -> Decision:
    """The best node for `pod`; `constraints` are the node affinities of the volumes it
    mounts (every one must match the node)."""
    demand = demand_of(pod)
    feasible: list[NodeInfo] = []
    rejections: dict[str, Rejection] = {}
    for name in sorted(snapshot.nodes):
        info = snapshot.nodes[name]
        rejection = first_rejection(info, pod, demand)
        if rejection is None:
            rejection = affinity.node_affinity(info, pod, demand)
        if rejection is None:
            rejection = affinity.inter_pod(snapshot, info, pod)
        if rejection is None and not all(node_matches(c, info.node) for c in constraints):
            rejection = Rejection(
                (Reason.VOLUME_NODE_AFFINITY,),
                f'node "{name}" is not where the pod\'s persistent volumes are',
            )
        if rejection is None:
            feasible.append(info)
        else:
            rejections[name] = rejection
    if not feasible:
        return Unschedulable(node_count=len(snapshot), rejections=MappingProxyType(rejections))

    # `feasible` is in name order and max() keeps the first of equals: ties go to the first name.
    most = scores.most_owned(pod, feasible)  # once per pod: spread would be O(nodes²) per pod

    def score(info: NodeInfo) -> float:
        preferred = affinity.preference(snapshot, info, pod)
        return scores.total(info, pod, demand, feasible, most=most) + AFFINITY_WEIGHT * preferred

    best = max(feasible, key=score)
    return Placement(node=best.name, score=score(best))

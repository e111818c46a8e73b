"""The scheduling decision: one pod, one snapshot, one answer.

Invariants: `schedule` is a pure function. It returns `Placement` naming the best feasible node
it found (highest total score; ties go to the alphabetically first node name, so the same
inputs always give the same node) or `Unschedulable` whose message is Kubernetes' own
("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient
memory."): every rejected node's reasons counted, the "count reason" strings sorted as strings.

Sampling (Kubernetes' percentageOfNodesToScore, adaptive): below `MIN_NODES_TO_FIND` nodes every
node is filtered and scored; above, the search walks the nodes in the snapshot's order from
`start` (wrapping around) and stops once `nodes_to_find(n)` feasible nodes are found: 50% of
the nodes less one point per 125 nodes, never under 5% nor under 100 nodes. Both answers say
how many nodes were `searched`, so the caller starts the next search where this one stopped and
every node gets its turn. Filters still run on every node chosen; a pod is Unschedulable only
when every node was searched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from controlplane.objects.nodeselectors import matches as node_matches
from controlplane.scheduler import affinity, scores
from controlplane.scheduler.filters import Check, Reason, Rejection, checker
from controlplane.scheduler.snapshot import Demand, NodeInfo, Pod, Snapshot, demand_of
from pilothouse.v1.objects_pb2 import NodeSelector

MIN_NODES_TO_FIND = 100
BASE_PERCENTAGE = 50
MIN_PERCENTAGE = 5


def nodes_to_find(total: int) -> int:
    """How many feasible nodes to find among `total` before choosing (kube-scheduler's
    numFeasibleNodesToFind with its adaptive percentage)."""
    if total < MIN_NODES_TO_FIND:
        return total
    percentage = max(BASE_PERCENTAGE - total // 125, MIN_PERCENTAGE)
    return max(total * percentage // 100, MIN_NODES_TO_FIND)


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    score: float
    searched: int = field(default=0, compare=False)  # nodes filtered, from `start`


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No node can take the pod; `rejections` says why, node by node."""

    node_count: int
    rejections: Mapping[str, Rejection]
    searched: int = field(default=0, compare=False)

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


def _pod_rules(
    snapshot: Snapshot, pod: Pod, demand: Demand, constraints: Sequence[NodeSelector]
) -> Check | None:
    """The filters after `checker`'s that this pod can fail (required node affinity, inter-pod
    rules, its volumes' nodes), as one check; None when it can fail none of them."""
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    node_affinity = bool(required.node_selector_terms)
    inter_pod = affinity.inter_pod_applies(snapshot, pod)
    if not (node_affinity or inter_pod or constraints):
        return None

    def check(info: NodeInfo) -> Rejection | None:
        if node_affinity and (rejection := affinity.node_affinity(info, pod, demand)):
            return rejection
        if inter_pod and (rejection := affinity.inter_pod(snapshot, info, pod)):
            return rejection
        if not all(node_matches(c, info.node) for c in constraints):
            return Rejection(
                (Reason.VOLUME_NODE_AFFINITY,),
                f'node "{info.name}" is not where the pod\'s persistent volumes are',
            )
        return None

    return check


def schedule(
    snapshot: Snapshot, pod: Pod, *, constraints: Sequence[NodeSelector] = (), start: int = 0
) -> Decision:
    """The best node for `pod` among those searched from `start` (an index into the
    snapshot's node order); `constraints` are the node affinities of the volumes it mounts
    (every one must match the node)."""
    demand = demand_of(pod)
    check = checker(pod, demand)
    rules = _pod_rules(snapshot, pod, demand, constraints)
    infos = list(snapshot.nodes.values())
    total = len(infos)
    wanted = nodes_to_find(total)
    start = start % total if total else 0
    feasible: list[NodeInfo] = []
    rejections: dict[str, Rejection] = {}
    searched = 0
    for info in infos[start:] + infos[:start]:
        searched += 1
        rejection = check(info)
        if rejection is None and rules is not None:
            rejection = rules(info)
        if rejection is not None:
            rejections[info.name] = rejection
            continue
        feasible.append(info)
        if len(feasible) >= wanted:
            break
    if not feasible:
        return Unschedulable(
            node_count=total, rejections=MappingProxyType(rejections), searched=searched
        )

    extra = None
    if affinity.prefers(pod):

        def extra(info: NodeInfo) -> float:
            return AFFINITY_WEIGHT * affinity.preference(snapshot, info, pod)

    node, score = scores.best(pod, demand, feasible, extra)
    return Placement(node=node.name, score=score, searched=searched)

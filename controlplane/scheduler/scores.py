"""Scores: among the nodes that passed every filter, which suits the pod best (0..100 each).

Invariants: pure functions of the node info, the pod and the feasible set; higher is better.
`scorer(pod, demand, feasible)` is built once per pod and adds, weighted: least allocated
(Kubernetes' NodeResourcesLeastAllocated: cpu and memory equally weighted, the pod's own demand
counted, a pod asking for nothing counted as 100m cpu and 200 MiB, as
Kubernetes' non-zero defaults do), so empty nodes fill first; spread, which prefers the node
holding the fewest pods of the same controller (one ReplicaSet) among the feasible nodes, so one
Deployment's replicas spread: a node holding `most` of them scores 0, one holding none 100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controlplane.scheduler.snapshot import Demand, NodeInfo, Pod, controller_uid, non_zero

MAX_SCORE = 100

# Spreading a Deployment outweighs packing by free resources (Kubernetes weighs
# PodTopologySpread 2 against NodeResourcesFit 1).
SPREAD_WEIGHT = 2
LEAST_ALLOCATED_WEIGHT = 1


Score = Callable[[NodeInfo], float]


def scorer(pod: Pod, demand: Demand, feasible: Sequence[NodeInfo]) -> Score:
    """The total score of a node for `pod` (least allocated + spread, weighted), with what is
    the same for every node found once per pod: its non-zero demand, its controller, and the
    most pods of that controller on one feasible node."""
    cpu, memory = non_zero(demand)
    owner = controller_uid(pod)
    most = max((c.owners.get(owner, 0) for c in feasible), default=0) if owner else 0

    def score(info: NodeInfo) -> float:
        used_cpu, used_memory = info.scoring_requested
        used_cpu += cpu
        used_memory += memory
        capacity_cpu, capacity_memory = info.allocatable_cpu, info.allocatable_memory
        free = 0.0
        if capacity_cpu > 0 and used_cpu <= capacity_cpu:
            free += (capacity_cpu - used_cpu) * MAX_SCORE / capacity_cpu
        if capacity_memory > 0 and used_memory <= capacity_memory:
            free += (capacity_memory - used_memory) * MAX_SCORE / capacity_memory
        spread = MAX_SCORE
        if most:
            spread = MAX_SCORE * (most - info.owners.get(owner, 0)) / most
        return LEAST_ALLOCATED_WEIGHT * free / 2 + SPREAD_WEIGHT * spread

    return score

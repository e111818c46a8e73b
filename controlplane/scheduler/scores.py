"""Scores: among the nodes that passed every filter, which suits the pod best (0..100 each).

Invariants: pure functions of the node info, the pod and the feasible set; higher is better.
`best(pod, demand, feasible)` adds, weighted: least allocated
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


Extra = Callable[[NodeInfo], float]


def best(
    pod: Pod, demand: Demand, feasible: Sequence[NodeInfo], extra: Extra | None = None
) -> tuple[NodeInfo, float]:
    """The feasible node with the highest total (least allocated + spread, weighted, plus
    `extra(node)` when given), ties to the first name, and its total. `feasible` is not empty.

    What is the same for every node is found once per pod (its non-zero demand, controller).
    Spread depends on a node only through how many of the controller's pods it holds, so
    without `extra` only the best node of each such count can win: one pass over the nodes."""
    cpu, memory = non_zero(demand)
    owner = controller_uid(pod)
    rows: list[tuple[float, str, NodeInfo, int]] = []  # least allocated, name, node, owned
    leaders: dict[int, tuple[float, str, NodeInfo, int]] = {}  # owned -> its best row
    for info in feasible:
        used_cpu, used_memory = info.scoring_requested
        used_cpu += cpu
        used_memory += memory
        capacity_cpu, capacity_memory = info.allocatable_cpu, info.allocatable_memory
        free = 0.0
        if capacity_cpu > 0 and used_cpu <= capacity_cpu:
            free += (capacity_cpu - used_cpu) * MAX_SCORE / capacity_cpu
        if capacity_memory > 0 and used_memory <= capacity_memory:
            free += (capacity_memory - used_memory) * MAX_SCORE / capacity_memory
        owned = info.owners.get(owner, 0) if owner else 0
        row = (LEAST_ALLOCATED_WEIGHT * free / 2, info.name, info, owned)
        if extra is not None:
            rows.append(row)
            continue
        leader = leaders.get(owned)
        if leader is None or row[0] > leader[0] or (row[0] == leader[0] and row[1] < leader[1]):
            leaders[owned] = row
    candidates = rows if extra is not None else list(leaders.values())
    most = max(row[3] for row in candidates)
    winner, top = candidates[0][2], -1.0
    for least, name, info, owned in candidates:
        spread = MAX_SCORE * (most - owned) / most if most else MAX_SCORE
        total = least + SPREAD_WEIGHT * spread
        if extra is not None:
            total += extra(info)
        if total > top or (total == top and name < winner.name):
            winner, top = info, total
    return winner, top

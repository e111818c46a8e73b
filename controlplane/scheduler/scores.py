"""Scores: among the nodes that passed every filter, which suits the pod best (0..100 each).

Invariants: pure functions of the node info, the pod and the feasible set; higher is better.
`least_allocated` is Kubernetes' NodeResourcesLeastAllocated (cpu and memory equally weighted,
the pod's own demand counted, a pod asking for nothing counted as 100m cpu and 200 MiB, as
Kubernetes' non-zero defaults do) so empty nodes fill first. `spread` prefers the node holding
the fewest pods of the same controller (one ReplicaSet), so one Deployment's replicas spread.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.scheduler.snapshot import Demand, NodeInfo, Pod, controller_uid, non_zero

MAX_SCORE = 100

# Spreading a Deployment outweighs packing by free resources (Kubernetes weighs
# PodTopologySpread 2 against NodeResourcesFit 1).
SPREAD_WEIGHT = 2
LEAST_ALLOCATED_WEIGHT = 1


def _free_fraction(capacity: int, requested: int) -> float:
    if capacity <= 0 or requested > capacity:
        return 0.0
    return (capacity - requested) * MAX_SCORE / capacity


def least_allocated(info: NodeInfo, pod: Pod, demand: Demand) -> float:
    cpu, memory = non_zero(demand)
    used_cpu, used_memory = info.scoring_requested
    return (
        _free_fraction(info.allocatable_cpu, used_cpu + cpu)
        + _free_fraction(info.allocatable_memory, used_memory + memory)
    ) / 2


def most_owned(pod: Pod, feasible: Sequence[NodeInfo]) -> int:
    """The most pods of `pod`'s controller on one feasible node (0 for a bare pod): the same
    for every node scored for one pod, so computed once per pod, not once per node."""
    owner = controller_uid(pod)
    if not owner:
        return 0
    return max(candidate.count_owned_by(owner) for candidate in feasible)


def spread(
    info: NodeInfo, pod: Pod, feasible: Sequence[NodeInfo], *, most: int | None = None
) -> float:
    owner = controller_uid(pod)
    if not owner:
        return MAX_SCORE
    if most is None:
        most = most_owned(pod, feasible)
    if most == 0:
        return MAX_SCORE
    return MAX_SCORE * (most - info.count_owned_by(owner)) / most


def total(
    info: NodeInfo,
    pod: Pod,
    demand: Demand,
    feasible: Sequence[NodeInfo],
    *,
    most: int | None = None,
) -> float:
    """`most`: `most_owned(pod, feasible)` when the caller has it (else computed here)."""
    return LEAST_ALLOCATED_WEIGHT * least_allocated(info, pod, demand) + SPREAD_WEIGHT * spread(
        info, pod, feasible, most=most
    )

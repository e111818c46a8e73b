"""What a StatefulSet does next with its ordinals (pure).

Vocabulary: ordinal i names pod `<set>-<i>`; a pod is *healthy* when Running and Ready and not
Terminating; the *update revision* is the current template's, the *current revision* the one
every pod had before the update began; `partition` (RollingUpdate) keeps ordinals below it at
the current revision.

Rules (apps/v1 StatefulSet controller):
- a missing ordinal below `replicas` gets a pod of its revision (update revision from the
  partition up, current below it; OnDelete: the update revision); a Failed pod is deleted
  and its ordinal made again once it is gone; a Terminating pod holds its name: nothing of
  that ordinal is made until it is gone, so one ordinal never runs twice;
- OrderedReady: one step at a time, in order: ordinal i is made only once 0..i-1 are
  healthy; surplus ordinals (>= replicas) go from the highest down, one at a time, and only
  while the others are healthy. Parallel: every missing pod at once, every surplus one at once;
- RollingUpdate: once every pod is healthy, the highest ordinal at or above the partition that
  is not at the update revision is deleted (it comes back at the update revision), one at a
  time, each waiting for the one before to be healthy again. OnDelete: nothing is replaced
  until someone deletes a pod.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pilothouse.v1 import objects_pb2


@dataclass(slots=True)
class Step:
    create: list[tuple[int, str]] = field(default_factory=list)  # (ordinal, revision)
    delete: list[objects_pb2.Pod] = field(default_factory=list)


def _terminating(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


def plan(
    *,
    replicas: int,
    parallel: bool,
    rolling: bool,
    partition: int,
    pods: Mapping[int, objects_pb2.Pod],
    update_revision: str,
    current_revision: str,
    revision_of: Callable[[objects_pb2.Pod], str],
    healthy: Callable[[objects_pb2.Pod], bool],
) -> Step:
    step = Step()

    def revision_for(ordinal: int) -> str:
        if rolling and ordinal < partition:
            return current_revision
        return update_revision

    # Scale up and repair.
    for ordinal in range(replicas):
        pod = pods.get(ordinal)
        if pod is None:
            step.create.append((ordinal, revision_for(ordinal)))
            if not parallel:
                return step
            continue
        if _terminating(pod):
            if not parallel:
                return step
            continue
        if pod.status.phase in ("Failed", "Succeeded"):
            step.delete.append(pod)
            if not parallel:
                return step
            continue
        if not parallel and not healthy(pod):
            return step
    # Scale down, highest ordinal first.
    condemned = sorted((o for o in pods if o >= replicas), reverse=True)
    in_range_healthy = all((p := pods.get(o)) is not None and healthy(p) for o in range(replicas))
    for ordinal in condemned:
        pod = pods[ordinal]
        if _terminating(pod):
            if not parallel:
                return step
            continue
        if not parallel and not in_range_healthy:
            return step
        step.delete.append(pod)
        if not parallel:
            return step
    if step.create or step.delete or not rolling:
        return step
    # Rolling update, highest ordinal first, one at a time, all healthy.
    if not all((p := pods.get(o)) is not None and healthy(p) for o in range(replicas)):
        return step
    for ordinal in range(replicas - 1, partition - 1, -1):
        pod = pods[ordinal]
        if revision_of(pod) != update_revision:
            step.delete.append(pod)
            return step
    return step

"""Adoption and release: which pods a selector-based workload controls (Kubernetes'
ControllerRefManager).

Rules, for an owner (a ReplicaSet, ReplicationController, Job, DaemonSet, StatefulSet) and the
pods of its namespace:
- a pod whose controller reference is the owner's uid is the owner's while its labels match the
  owner's selector; once they stop matching, the reference is removed (the pod is *released*
  and lives on, unowned), unless the owner is being deleted;
- a pod with no controller reference whose labels match is *adopted* (a controlling reference
  to the owner is added), unless the pod or the owner is being deleted; the owner is read from
  the store first, so nothing is adopted by an owner that was deleted meanwhile;
- a pod controlled by anything else is never touched;
- `finalizers` are added to a pod as it is adopted (a Job's tracking finalizer), in the same
  write.

Invariants: every write is a compare-and-swap on the pod as cached; a conflict leaves the pod
out of this pass (the next one sees it fresh). Returns the pods the owner controls now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog
from google.protobuf.message import Message

from controlplane.objects.owners import controller_of
from controlplane.objects.podtemplate import owner_reference
from controlplane.objects.store import ObjectStore
from controlplane.store import Conflict, NotFound
from pilothouse.kinds import of_message
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

LabelMatch = Callable[[Mapping[str, str]], bool]


async def claim(
    objects: ObjectStore,
    owner: Message,
    pods: Iterable[objects_pb2.Pod],
    *,
    matches: LabelMatch,
    finalizers: Sequence[str] = (),
) -> list[objects_pb2.Pod]:
    """The pods `owner` controls after adopting and releasing as the module says."""
    uid = owner.metadata.uid
    owner_terminating = owner.metadata.HasField("deletion_timestamp")
    mine: list[objects_pb2.Pod] = []
    orphans: list[objects_pb2.Pod] = []
    for pod in pods:
        ref = controller_of(pod)
        selected = matches(pod.metadata.labels)
        if ref is not None and ref.uid == uid:
            if selected or owner_terminating:
                mine.append(pod)
            else:
                await _release(objects, pod, uid)
        elif (
            ref is None
            and selected
            and not owner_terminating
            and not pod.metadata.HasField("deletion_timestamp")
        ):
            orphans.append(pod)
    if orphans and await _still_there(objects, owner):
        for pod in orphans:
            adopted = await _adopt(objects, pod, owner, finalizers=finalizers)
            if adopted is not None:
                mine.append(adopted)
    return mine


async def _still_there(objects: ObjectStore, owner: Message) -> bool:
    try:
        fresh = await objects.get(of_message(owner), owner.metadata.namespace, owner.metadata.name)
    except NotFound:
        return False
    return fresh.metadata.uid == owner.metadata.uid and not fresh.metadata.HasField(
        "deletion_timestamp"
    )


async def _adopt(
    objects: ObjectStore, pod: objects_pb2.Pod, owner: Message, *, finalizers: Sequence[str]
) -> objects_pb2.Pod | None:
    updated = objects_pb2.Pod()
    updated.CopyFrom(pod)
    updated.metadata.owner_references.append(owner_reference(owner))
    missing = [f for f in finalizers if f not in updated.metadata.finalizers]
    updated.metadata.finalizers.extend(missing)
    try:
        written = await objects.update(updated)
    except (Conflict, NotFound):
        return None
    log.info(
        "pod.adopted",
        pod=f"{pod.metadata.namespace}/{pod.metadata.name}",
        owner=f"{of_message(owner).info.kind}/{owner.metadata.name}",
    )
    return written


async def _release(objects: ObjectStore, pod: objects_pb2.Pod, uid: str) -> None:
    updated = objects_pb2.Pod()
    updated.CopyFrom(pod)
    kept = [r for r in updated.metadata.owner_references if r.uid != uid]
    del updated.metadata.owner_references[:]
    updated.metadata.owner_references.extend(kept)
    with contextlib.suppress(Conflict, NotFound):
        await objects.update(updated)
        log.info("pod.released", pod=f"{pod.metadata.namespace}/{pod.metadata.name}")

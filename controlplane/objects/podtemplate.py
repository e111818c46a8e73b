"""Pods made from a workload's pod template, and their creation under expectations.

Every controller that runs pods (ReplicaSets and ReplicationControllers, Jobs, DaemonSets,
StatefulSets) makes them here, so a pod made from a template is the same whoever made it:
the template's labels and annotations, its spec (unbound, status Pending), Kubernetes' pod
defaults, and a controlling owner reference (controller=true, blockOwnerDeletion=true) to the
workload.

Vocabulary:
- `generateName` pods (ReplicaSets, Jobs, DaemonSets) get a fresh random name from the store,
  so a replacement is visibly a new pod; `create_generated` draws again on the rare clash.
- fixed-name pods (StatefulSets: `web-0`) are created with their name; AlreadyExists means it
  exists (perhaps still terminating), never "make another".
- expectations (`Expectations`): after creating pods for an owner, a controller neither creates
  nor deletes pods of that owner until its pod informer has applied the revision of the last
  create, so a pass on a cache a step behind never makes a pod twice.

Invariants: `pod_from_template` is pure; an expectation only ever holds a pass back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from controlplane.objects.store import ObjectStore
from controlplane.store import AlreadyExists
from pilothouse.kinds import of_message
from pilothouse.manifests import set_defaults
from pilothouse.v1 import objects_pb2

NAME_ATTEMPTS = 5  # a random name already taken (1 in 14 million): draw another


def owner_reference(owner: Message) -> objects_pb2.OwnerReference:
    """A controlling reference to `owner` (a stored object, with its uid)."""
    info = of_message(owner).info
    return objects_pb2.OwnerReference(
        api_version=info.api_version,
        kind=info.kind,
        name=owner.metadata.name,
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )


def pod_from_template(
    template: objects_pb2.PodTemplateSpec,
    *,
    owner: Message,
    name: str = "",
    generate_name: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> objects_pb2.Pod:
    """A new Pod of `template` controlled by `owner`, in its namespace, defaulted.

    `name` for a fixed name, else `generate_name` (default "<owner name>-"); `labels` and
    `annotations` are added to the template's (they win on a clash).
    """
    pod = objects_pb2.Pod()
    meta = pod.metadata
    if name:
        meta.name = name
    else:
        meta.generate_name = generate_name or f"{owner.metadata.name}-"
    meta.namespace = owner.metadata.namespace
    meta.labels.update(template.metadata.labels)
    meta.labels.update(labels or {})
    meta.annotations.update(template.metadata.annotations)
    meta.annotations.update(annotations or {})
    meta.owner_references.append(owner_reference(owner))
    pod.spec.CopyFrom(template.spec)
    pod.spec.node_name = ""
    set_defaults(pod)
    pod.status.phase = "Pending"
    return pod


class Expectations:
    """Owner uid -> the store revision its pending creates wait for (see the module)."""

    def __init__(self) -> None:
        self._revisions: dict[str, int] = {}

    def created(self, owner_uid: str, revision: int) -> None:
        if revision > self._revisions.get(owner_uid, 0):
            self._revisions[owner_uid] = revision

    def satisfied(self, owner_uid: str, *, seen: int) -> bool:
        """Has the pod informer (at revision `seen`) observed every pod made for the owner?"""
        waiting = self._revisions.get(owner_uid)
        if waiting is None:
            return True
        if seen >= waiting:
            del self._revisions[owner_uid]
            return True
        return False

    def forget(self, owner_uid: str) -> None:
        self._revisions.pop(owner_uid, None)

    def __len__(self) -> int:
        return len(self._revisions)


async def create_generated(
    objects: ObjectStore, pod: objects_pb2.Pod, *, expectations: Expectations | None = None
) -> objects_pb2.Pod:
    """Create a `generateName` pod, drawing a new name if the random one is taken; records
    the create in `expectations` under the pod's controlling owner."""
    for attempt in range(NAME_ATTEMPTS):
        try:
            created = await objects.create(pod)
        except AlreadyExists:
            if attempt == NAME_ATTEMPTS - 1:
                raise
            continue
        if expectations is not None:
            for ref in created.metadata.owner_references:
                if ref.controller:
                    expectations.created(ref.uid, int(created.metadata.resource_version))
        return created
    raise AssertionError("unreachable")


class Tombstones:
    """Pods this process deleted that the pod informer may still show (by uid), so a pass on
    a cache a step behind neither counts them nor deletes others in their place."""

    def __init__(self) -> None:
        self._uids: dict[tuple[str, str], str] = {}

    def bury(self, pod: objects_pb2.Pod) -> None:
        self._uids[(pod.metadata.namespace, pod.metadata.name)] = pod.metadata.uid

    def alive(self, pods: Iterable[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
        if not self._uids:
            return list(pods)
        return [
            p
            for p in pods
            if self._uids.get((p.metadata.namespace, p.metadata.name)) != p.metadata.uid
        ]

    def prune(self, lookup: Callable[[str, str], objects_pb2.Pod | None]) -> None:
        """Forget the pods that `lookup` (the pod informer) no longer shows as they were."""
        for (namespace, name), uid in list(self._uids.items()):
            seen = lookup(namespace, name)
            if seen is None or seen.metadata.uid != uid:
                del self._uids[(namespace, name)]

    def __len__(self) -> int:
        return len(self._uids)

"""Deletion that takes time: finalizers, Terminating objects, and pods stopped before they go.

Vocabulary (Kubernetes'):
- an object is *Terminating* while its deletionTimestamp is set and it is still stored;
- a *finalizer* names work that must be done before a Terminating object may go:
  `orphan` (its dependents are released first), `foregroundDeletion` (its dependents are
  deleted first); a Namespace is Terminating until everything in it is gone;
- pods are deleted gracefully by the ObjectStore itself (`ObjectStore.delete`): a bound pod is
  Terminating until its node's agent reports it stopped, so its name stays taken meanwhile.

- a pod's finalizers (the Job controller's `batch.kubernetes.io/job-tracking`) hold it where
  it would otherwise be removed: it stays Terminating until they are released.

Invariants: every write is a compare-and-swap; marking is idempotent (a second delete of a
Terminating object adds its finalizer, never a second timestamp); `release` deletes the object
only when the last finalizer went and it is still Terminating.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from google.protobuf.message import Message

from controlplane.objects.namespaces import IMPLICIT
from controlplane.objects.store import Invalid, ObjectStore
from controlplane.store import Conflict, NotFound
from pilothouse.kinds import Kind, of_message
from pilothouse.v1 import objects_pb2

_ATTEMPTS = 5


class Finalizer(enum.Enum):
    ORPHAN = "orphan"
    FOREGROUND = "foregroundDeletion"


class Propagation(enum.Enum):
    """kubectl's --cascade: what becomes of the objects the deleted one owns."""

    BACKGROUND = "Background"
    FOREGROUND = "Foreground"
    ORPHAN = "Orphan"

    @classmethod
    def parse(cls, text: str) -> Propagation:
        wanted = (text or "Background").strip().lower()
        for policy in cls:
            if policy.value.lower() == wanted:
                return policy
        raise Invalid(f'propagationPolicy "{text}" is not one of Background, Foreground, Orphan')


def is_terminating(obj: Message) -> bool:
    return obj.metadata.HasField("deletion_timestamp")


async def mark(
    objects: ObjectStore,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    finalizers: Iterable[str] = (),
    now: float,
    resource_version: str | None = None,
) -> Message:
    """Make the object Terminating with `finalizers` added; returns the stored object."""
    wanted = list(finalizers)
    for attempt in range(_ATTEMPTS):
        current = await objects.get(kind, namespace, name)
        if resource_version and current.metadata.resource_version != resource_version:
            raise Conflict(f"{kind.info.plural} {name!r} changed: it was not deleted")
        meta = current.metadata
        if not meta.HasField("deletion_timestamp"):
            meta.deletion_timestamp.FromNanoseconds(int(now * 1e9))
        for finalizer in wanted:
            if finalizer not in meta.finalizers:
                meta.finalizers.append(finalizer)
        if isinstance(current, objects_pb2.Namespace):
            try:
                await objects.update(current)
                current = await objects.get(kind, namespace, name)
                current.status.phase = "Terminating"
                return await objects.update_status(current)
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
        try:
            return await objects.update(current)
        except Conflict:
            if attempt == _ATTEMPTS - 1 or resource_version:
                raise
    raise AssertionError("unreachable")


async def release(objects: ObjectStore, obj: Message, finalizer: str) -> None:
    """Drop `finalizer` from the object; delete it when it is Terminating and none is left.

    A pod is first written without the finalizer, then deleted: one held only by its
    finalizers (grace period 0, `ObjectStore.delete`) goes at once, one still stopping
    gracefully goes when its node reports it stopped."""
    kind = of_message(obj)
    meta = obj.metadata
    for _ in range(_ATTEMPTS):
        try:
            current = await objects.get(kind, meta.namespace, meta.name)
        except NotFound:
            return
        if current.metadata.uid != meta.uid:
            return
        left = [f for f in current.metadata.finalizers if f != finalizer]
        try:
            if kind is Kind.POD or left or not is_terminating(current):
                if len(left) != len(current.metadata.finalizers):
                    del current.metadata.finalizers[:]
                    current.metadata.finalizers.extend(left)
                    current = await objects.update(current)
                if left or not is_terminating(current):
                    return
            held = kind is Kind.POD and current.metadata.deletion_grace_period_seconds == 0
            await objects.delete(
                kind,
                current.metadata.namespace,
                current.metadata.name,
                resource_version=current.metadata.resource_version,
                grace_period_seconds=0 if held else None,
            )
            return
        except NotFound:
            return
        except Conflict:
            continue
    raise Conflict(f"{kind.info.plural} {meta.name!r} kept changing: finalizer not released")


# Kinds whose objects own others (the garbage collector follows them), so a Foreground or
# Orphan delete of one has dependents to wait for or release; any other kind goes at once.
OWNER_KINDS = frozenset(
    {
        Kind.DEPLOYMENT,
        Kind.REPLICASET,
        Kind.REPLICATIONCONTROLLER,
        Kind.JOB,
        Kind.CRONJOB,
        Kind.DAEMONSET,
        Kind.STATEFULSET,
    }
)


async def delete(
    objects: ObjectStore,
    kind: Kind,
    namespace: str,
    name: str,
    *,
    propagation: Propagation = Propagation.BACKGROUND,
    resource_version: str | None = None,
    now: float,
) -> Message:
    """Delete as the API does: a Namespace becomes Terminating (its controller empties it);
    a Foreground or Orphan delete of an owner marks it with that finalizer (the garbage
    collector finishes it); anything else is deleted by the ObjectStore (Background: the
    garbage collector then deletes its dependents). Returns the object as deleted or marked."""
    if kind is Kind.NAMESPACE:
        if name in IMPLICIT:
            raise Invalid(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        return await mark(
            objects, kind, namespace, name, now=now, resource_version=resource_version
        )
    if kind in OWNER_KINDS and propagation is not Propagation.BACKGROUND:
        finalizer = (
            Finalizer.FOREGROUND if propagation is Propagation.FOREGROUND else Finalizer.ORPHAN
        )
        return await mark(
            objects,
            kind,
            namespace,
            name,
            finalizers=[finalizer.value],
            now=now,
            resource_version=resource_version,
        )
    return await objects.delete(kind, namespace, name, resource_version=resource_version)

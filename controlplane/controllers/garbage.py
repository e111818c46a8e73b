"""The garbage collector: dependents whose owners are gone are deleted; owners deleted in the
foreground wait for their dependents; owners deleted with orphan release them.

This is how deleting a Deployment, ReplicaSet, ReplicationController, Job, CronJob, DaemonSet or
StatefulSet deletes what it made (`delete --cascade=background`, the default), how
`--cascade=foreground` keeps the owner Terminating until its dependents are gone, how
`--cascade=orphan` leaves them running and unowned, and how leftovers of a crash mid-deletion
are cleaned up on the next start.

Vocabulary: a *dependent* lists owner references; its *owners* are the objects they name. The
kinds followed are those of `informers` (pass every kind that owns or is owned).

Invariants:
- An owner "exists" only if an object of the owner's kind, namespace and name exists with the
  reference's uid: a re-created namesake does not adopt the old one's dependents.
- A dependent is collected only when every one of its owners is gone (and all are of followed
  kinds: an owner of a kind not followed is never presumed gone).
- Before deleting, the owners' absence is confirmed with a read from the store (an informer
  may not have seen a just-created owner yet), and the delete is conditional on the
  dependent's resourceVersion, so nothing is deleted on stale information.
- Foreground: while an owner is Terminating with `foregroundDeletion`, its dependents are
  deleted (those that own others are themselves deleted in the foreground); once none is
  left the finalizer is released and the owner goes. Orphan: the owner's references are
  removed from its dependents, then the `orphan` finalizer is released.
- Keys: "<plural>:<namespace>/<name>" of a dependent to check, "owner:<plural>:<namespace>/
  <name>" of a Terminating owner to finish.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

import structlog
from google.protobuf.message import Message

from controlplane.cache.informer import Informer, Notice
from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.deletion import OWNER_KINDS, Finalizer, mark, release
from controlplane.reconcile import Result
from controlplane.reconcile.controller import Controller
from controlplane.store import Conflict, NotFound
from pilothouse.kinds import Kind, of_message

log = structlog.get_logger(__name__)

_OWNER = "owner:"
_FINISHING = frozenset({Finalizer.FOREGROUND.value, Finalizer.ORPHAN.value})
RECHECK = 1.0  # s: a foreground owner looks again while its dependents are going


class GarbageCollector:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        informers: Mapping[Kind, Informer],
        now: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._informers = dict(informers)
        self._now = now
        self._by_kind_name = {kind.info.kind: kind for kind in self._informers}
        self._by_plural = {kind.info.plural: kind for kind in self._informers}

    # ------------------------------------------------------------------- keys

    def keys_for(self, notice: Notice) -> list[str]:
        obj = notice.object
        kind = of_message(obj)
        namespace = obj.metadata.namespace
        keys = []
        if notice.type is not ChangeType.DELETED:
            if obj.metadata.owner_references:
                keys.append(_key(kind, namespace, obj.metadata.name))
            if _finishing(obj):
                keys.append(_OWNER + _key(kind, namespace, obj.metadata.name))
        if notice.type is ChangeType.DELETED:
            uid = obj.metadata.uid
            for dependent_kind, dependent in self._dependents(namespace, uid):
                keys.append(_key(dependent_kind, namespace, dependent.metadata.name))
        # A dependent that went or let go: an owner finishing in the foreground looks again.
        if notice.type is ChangeType.DELETED or notice.old is not None:
            before = notice.old if notice.old is not None else obj
            for ref in before.metadata.owner_references:
                owner_kind = self._by_kind_name.get(ref.kind)
                if owner_kind is None:
                    continue
                cached = self._informers[owner_kind].get(namespace, ref.name)
                if cached is not None and _finishing(cached):
                    keys.append(_OWNER + _key(owner_kind, namespace, ref.name))
        return keys

    def _dependents(self, namespace: str, uid: str) -> list[tuple[Kind, Message]]:
        found = []
        for kind, informer in self._informers.items():
            for obj in informer.list(namespace if kind.info.namespaced else None):
                if any(ref.uid == uid for ref in obj.metadata.owner_references):
                    found.append((kind, obj))
        return found

    # -------------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> Result:
        if key.startswith(_OWNER):
            return await self._finish_owner(key.removeprefix(_OWNER))
        kind, namespace, name = self._parse(key)
        dependent = self._informers[kind].get(namespace, name)
        if dependent is None or not dependent.metadata.owner_references:
            return Result()
        for ref in dependent.metadata.owner_references:
            owner_kind = self._by_kind_name.get(ref.kind)
            if owner_kind is None:
                return Result()  # an owner of a kind we do not follow: never collect blindly
            if await self._owner_exists(owner_kind, namespace, ref.name, ref.uid):
                return Result()
        with contextlib.suppress(NotFound):
            # Conflict (changed since our cache saw it) propagates: retried with fresh state.
            await self._objects.delete(
                kind, namespace, name, resource_version=dependent.metadata.resource_version
            )
            log.info(
                "garbage.deleted",
                kind=kind.info.kind,
                namespace=namespace,
                name=name,
                owner=", ".join(f"{r.kind}/{r.name}" for r in dependent.metadata.owner_references),
            )
        return Result()

    async def _owner_exists(self, kind: Kind, namespace: str, name: str, uid: str) -> bool:
        cached = self._informers[kind].get(namespace if kind.info.namespaced else "", name)
        if cached is not None and cached.metadata.uid == uid:
            return True
        try:
            owner = await self._objects.get(kind, namespace, name)
        except NotFound:
            return False
        return owner.metadata.uid == uid

    async def _finish_owner(self, key: str) -> Result:
        kind, namespace, name = self._parse(key)
        try:
            owner = await self._objects.get(kind, namespace, name)
        except NotFound:
            return Result()
        if not _finishing(owner):
            return Result()
        uid = owner.metadata.uid
        dependents = self._dependents(namespace, uid)
        if Finalizer.ORPHAN.value in owner.metadata.finalizers:
            for dependent_kind, dependent in dependents:
                await self._let_go(dependent_kind, dependent, uid)
            await release(self._objects, owner, Finalizer.ORPHAN.value)
            log.info("garbage.orphaned", kind=kind.info.kind, name=name, dependents=len(dependents))
            return Result()
        if dependents:
            for dependent_kind, dependent in dependents:
                await self._delete_dependent(dependent_kind, dependent)
            return Result(requeue_after=RECHECK)
        # The informers show none: confirm with the store before letting the owner go.
        for dependent_kind in self._informers:
            listing = await self._objects.list(
                dependent_kind, namespace if dependent_kind.info.namespaced else None
            )
            if any(any(r.uid == uid for r in o.metadata.owner_references) for o in listing.items):
                return Result(requeue_after=RECHECK)
        await release(self._objects, owner, Finalizer.FOREGROUND.value)
        log.info("garbage.foreground_done", kind=kind.info.kind, namespace=namespace, name=name)
        return Result()

    async def _delete_dependent(self, kind: Kind, dependent: Message) -> None:
        meta = dependent.metadata
        if meta.HasField("deletion_timestamp") and kind is not Kind.POD:
            return  # already going (its own foreground deletion)
        with contextlib.suppress(NotFound, Conflict):
            if kind in OWNER_KINDS and self._dependents(meta.namespace, meta.uid):
                await mark(
                    self._objects,
                    kind,
                    meta.namespace,
                    meta.name,
                    finalizers=[Finalizer.FOREGROUND.value],
                    now=self._now(),
                )
            else:
                await self._objects.delete(
                    kind, meta.namespace, meta.name, resource_version=meta.resource_version
                )

    async def _let_go(self, kind: Kind, dependent: Message, uid: str) -> None:
        for _ in range(5):
            try:
                current = await self._objects.get(
                    kind, dependent.metadata.namespace, dependent.metadata.name
                )
            except NotFound:
                return
            kept = [r for r in current.metadata.owner_references if r.uid != uid]
            if len(kept) == len(current.metadata.owner_references):
                return
            del current.metadata.owner_references[:]
            current.metadata.owner_references.extend(kept)
            try:
                await self._objects.update(current)
                return
            except Conflict:
                continue

    def _parse(self, key: str) -> tuple[Kind, str, str]:
        plural, rest = key.split(":", 1)
        namespace, name = rest.split("/", 1)
        return self._by_plural[plural], namespace, name


def _finishing(obj: Message) -> bool:
    return obj.metadata.HasField("deletion_timestamp") and any(
        f in _FINISHING for f in obj.metadata.finalizers
    )


def _key(kind: Kind, namespace: str, name: str) -> str:
    return f"{kind.info.plural}:{namespace}/{name}"


def garbage_collector(
    objects: ObjectStore, *, informers: Mapping[Kind, Informer], workers: int = 2
) -> Controller:
    """Collects dependents among `informers`' kinds whose owners (also among them) are gone,
    and finishes Foreground and Orphan deletions of owners among them.

    Pass every kind that owns or is owned: Deployments, ReplicaSets, ReplicationControllers,
    Jobs, CronJobs, DaemonSets, StatefulSets, ControllerRevisions, PersistentVolumeClaims and
    Pods.
    """
    collector = GarbageCollector(objects, informers=informers)
    controller = Controller(
        "controller.garbage", collector, workers=workers, wait_for=tuple(informers.values())
    )

    def enqueue(notice: Notice) -> None:
        for key in collector.keys_for(notice):
            controller.enqueue(key)

    for informer in informers.values():
        informer.add_handler(enqueue)
    return controller

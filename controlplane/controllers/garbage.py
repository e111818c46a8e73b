"""The garbage collector: an object whose controlling owner no longer exists is deleted.

This is how deleting a Deployment deletes its ReplicaSets and, through them, its pods, and how
leftovers of a crash mid-deletion are cleaned up on the next start.

Invariants:
- An owner "exists" only if an object of the owner's kind, namespace and name exists with the
  owner reference's uid: a re-created namesake does not adopt the old one's dependents.
- Before deleting, the owner's absence is confirmed with a read from the store (the owner's
  informer may simply not have seen a just-created owner yet), and the delete is conditional on
  the dependent's resourceVersion, so nothing is deleted on stale information.
- Keys are "<plural>:<namespace>/<name>" of the dependent (e.g. "pods:default/web-abc-xyz").
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.owners import controller_of
from controlplane.reconcile import Result
from controlplane.reconcile.controller import Controller
from controlplane.store import NotFound
from pilothouse.kinds import Kind, of_message

log = structlog.get_logger(__name__)


class GarbageCollector:
    def __init__(self, objects: ObjectStore, *, informers: Mapping[Kind, Informer]) -> None:
        self._objects = objects
        self._informers = dict(informers)
        self._by_kind_name = {kind.info.kind: kind for kind in self._informers}
        self._by_plural = {kind.info.plural: kind for kind in self._informers}

    def keys_for(self, notice: Notice) -> list[str]:
        obj = notice.object
        kind = of_message(obj)
        keys = []
        if notice.type is not ChangeType.DELETED and controller_of(obj) is not None:
            keys.append(_key(kind, obj.metadata.namespace, obj.metadata.name))
        if notice.type is ChangeType.DELETED:
            uid = obj.metadata.uid
            for dependent_kind, informer in self._informers.items():
                for dependent in informer.list(obj.metadata.namespace):
                    ref = controller_of(dependent)
                    if ref is not None and ref.uid == uid:
                        keys.append(
                            _key(
                                dependent_kind,
                                dependent.metadata.namespace,
                                dependent.metadata.name,
                            )
                        )
        return keys

    async def reconcile(self, key: str) -> Result:
        plural, rest = key.split(":", 1)
        kind = self._by_plural[plural]
        namespace, name = rest.split("/", 1)
        dependent = self._informers[kind].get(namespace, name)
        if dependent is None:
            return Result()
        ref = controller_of(dependent)
        if ref is None:
            return Result()
        owner_kind = self._by_kind_name.get(ref.kind)
        if owner_kind is None:
            return Result()  # an owner of a kind we do not follow: never collect blindly
        cached = self._informers[owner_kind].get(namespace, ref.name)
        if cached is not None and cached.metadata.uid == ref.uid:
            return Result()
        try:
            owner = await self._objects.get(owner_kind, namespace, ref.name)
            if owner.metadata.uid == ref.uid:
                return Result()
        except NotFound:
            pass
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
                owner=f"{ref.kind}/{ref.name}",
            )
        return Result()


def _key(kind: Kind, namespace: str, name: str) -> str:
    return f"{kind.info.plural}:{namespace}/{name}"


def garbage_collector(
    objects: ObjectStore, *, informers: Mapping[Kind, Informer], workers: int = 2
) -> Controller:
    """Collects dependents among `informers`' kinds whose owners (also among them) are gone.

    Pass every kind that owns or is owned: {DEPLOYMENT, REPLICASET, POD}.
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

"""The namespace controller: the implicit namespaces exist, and a deleted namespace is emptied
before it goes.

Rules (Kubernetes' namespace lifecycle):
- `default` and `kube-system` always exist: they are created when missing (at start and
  whenever one is deleted);
- a Namespace marked for deletion (Terminating, see `objects.deletion.mark`) gets every object
  in it deleted, kind by kind (pods gracefully: they go once their nodes stopped them); while
  anything is left it stays Terminating (condition NamespaceContentRemaining) and is looked
  at again; once nothing of it has been left in the store for `QUIET` seconds (the last
  events about its pods land first), the Namespace itself is deleted, so nothing of it
  remains in etcd.

Invariants: every read of what is left comes from the store (not a cache), and the Namespace
is deleted conditionally on its resourceVersion.
"""

from __future__ import annotations

import contextlib

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.objects import ChangeType, ObjectStore, namespaces
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from controlplane.store import Conflict, NotFound
from pilothouse.conditions import set_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

RECHECK = 1.0  # s between looks while a Terminating namespace still holds objects
QUIET = 1.0  # s a namespace stays empty before it goes (late events of its pods land first)
_IMPLICIT_KEY = "@implicit"
# Owners before what they own, pods before the rest, events last: what goes first cannot
# make more of what goes after it.
_ORDER = (
    Kind.CRONJOB,
    Kind.DEPLOYMENT,
    Kind.STATEFULSET,
    Kind.DAEMONSET,
    Kind.JOB,
    Kind.REPLICASET,
    Kind.REPLICATIONCONTROLLER,
    Kind.POD,
)


def _namespaced_kinds() -> list[Kind]:
    rest = [k for k in Kind if k.info.namespaced and k not in _ORDER and k is not Kind.EVENT]
    return [*_ORDER, *rest, Kind.EVENT]


class NamespaceReconciler:
    def __init__(
        self, objects: ObjectStore, *, namespaces_informer: Informer, clock: Clock | None = None
    ) -> None:
        self._objects = objects
        self._namespaces = namespaces_informer
        self._clock = clock or SystemClock()
        self._empty_since: dict[str, float] = {}

    async def reconcile(self, key: str) -> Result:
        if key == _IMPLICIT_KEY:
            for name in namespaces.IMPLICIT:
                await namespaces.ensure(self._objects, name)
            return Result()
        try:
            namespace = await self._objects.get(Kind.NAMESPACE, "", key)
        except NotFound:
            return Result()
        if not namespace.metadata.HasField("deletion_timestamp"):
            return Result()
        left = await self._empty(key)
        if left:
            self._empty_since.pop(key, None)
            await self._report(namespace, left)
            return Result(requeue_after=RECHECK)
        # Empty: once more a moment later, for the last words (events) of what just went.
        since = self._empty_since.setdefault(key, self._clock.now())
        if self._clock.now() - since < QUIET:
            return Result(requeue_after=QUIET)
        del self._empty_since[key]
        with contextlib.suppress(NotFound):
            await self._objects.delete(
                Kind.NAMESPACE, "", key, resource_version=namespace.metadata.resource_version
            )
            log.info("namespace.deleted", namespace=key)
        return Result()

    async def _empty(self, namespace: str) -> dict[str, int]:
        """Delete what is in the namespace; what is still there (plural -> count)."""
        left: dict[str, int] = {}
        for kind in _namespaced_kinds():
            listing = await self._objects.list(kind, namespace)
            if not listing.items:
                continue
            left[kind.info.plural] = len(listing.items)
            for obj in listing.items:
                meta = obj.metadata
                if meta.HasField("deletion_timestamp") and kind is Kind.POD:
                    continue  # already stopping on its node
                with contextlib.suppress(NotFound, Conflict):
                    await self._objects.delete(kind, namespace, meta.name)
        return left

    async def _report(self, namespace: objects_pb2.Namespace, left: dict[str, int]) -> None:
        detail = ", ".join(
            f"{plural} has {count} resource instances" for plural, count in left.items()
        )
        wanted = objects_pb2.Condition(
            type="NamespaceContentRemaining",
            status="True",
            reason="SomeResourcesRemain",
            message=f"Some resources are remaining: {detail}",
        )
        conditions = set_condition(
            namespace.status.conditions, wanted, now=self._clock.now(), update_time=False
        )
        if list(conditions) == list(namespace.status.conditions) and (
            namespace.status.phase == "Terminating"
        ):
            return
        del namespace.status.conditions[:]
        namespace.status.conditions.extend(conditions)
        namespace.status.phase = "Terminating"
        with contextlib.suppress(NotFound, Conflict):
            await self._objects.update_status(namespace)


def namespace_controller(
    objects: ObjectStore,
    *,
    namespaces_informer: Informer,
    clock: Clock | None = None,
    workers: int = 2,
) -> Controller:
    """The namespace controller, subscribed to the namespace informer (which must also run)."""
    reconciler = NamespaceReconciler(objects, namespaces_informer=namespaces_informer, clock=clock)
    controller = Controller(
        "controller.namespace",
        reconciler,
        workers=workers,
        clock=clock,
        wait_for=(namespaces_informer,),
    )
    controller.enqueue(_IMPLICIT_KEY)

    def enqueue(notice: Notice) -> None:
        name = notice.object.metadata.name
        if notice.type is ChangeType.DELETED:
            if name in namespaces.IMPLICIT:
                controller.enqueue(_IMPLICIT_KEY)
            return
        if notice.object.metadata.HasField("deletion_timestamp"):
            controller.enqueue(name)

    namespaces_informer.add_handler(enqueue)
    return controller

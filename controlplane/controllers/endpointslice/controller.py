"""The EndpointSlice reconciler: one pass per Service, keyed "namespace/name".

A pass reads the Service, the pods its selector matches and the nodes (from informers),
computes the slices they should fill (`endpoints.plan`) among the slices this controller
manages for the Service (label `endpointslice.kubernetes.io/managed-by`), and writes the
difference with compare-and-swap writes. A Service without a selector, or gone, keeps no
managed slice (slices a person applies for it are left alone: they are how endpoints outside
the cluster are given).

Invariants:
- Level-triggered: a pass depends only on what it reads; a lost notice or a restart is healed
  by the next pass of the same key (and a slice edited by hand is put back).
- Its own writes are remembered (`_Written`) until the slice informer shows them, so a pass on
  a cache a step behind neither creates a second slice for the same endpoints nor resurrects
  a deleted one.
- Which changes matter: a Service's; a pod's address, readiness, deletion, phase, labels,
  node or hostname (for the Services selecting it before or after); a node being lost or
  found again (for the Services of its pods); a managed slice's (to put it back).
"""

from __future__ import annotations

import contextlib

import structlog
from google.protobuf.message import Message

from controlplane.cache.informer import NODE, Informer, Notice, pod_node
from controlplane.controllers.endpointslice import endpoints
from controlplane.nodes import conditions
from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.endpoints import is_managed as managed
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock
from controlplane.reconcile.controller import Controller
from controlplane.store import AlreadyExists, NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


def _selects(service: objects_pb2.Service, labels: object) -> bool:
    selector = service.spec.selector
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())  # type: ignore[attr-defined]


class _Written:
    """Slices this controller wrote that the informer may not show yet (by namespace/name):
    the object as written, or None for a delete, with the revision of the write."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[objects_pb2.EndpointSlice | None, int]] = {}

    def record(self, slice_: objects_pb2.EndpointSlice, *, deleted: bool = False) -> None:
        meta = slice_.metadata
        revision = int(meta.resource_version or 0)
        self._items[(meta.namespace, meta.name)] = (None if deleted else slice_, revision)

    def overlay(
        self, cached: list[objects_pb2.EndpointSlice], namespace: str, service: str
    ) -> list[objects_pb2.EndpointSlice]:
        """`cached` (the informer's managed slices of the Service) with our newer writes."""
        by_name = {s.metadata.name: s for s in cached}
        for (ns, name), (written, revision) in list(self._items.items()):
            if ns != namespace:
                continue
            seen = by_name.get(name)
            if written is None:  # deleted by us
                if seen is None or int(seen.metadata.resource_version) > revision:
                    del self._items[(ns, name)]  # the cache saw it go (or a new one came)
                else:
                    del by_name[name]
                continue
            if written.metadata.labels.get(endpoints.SERVICE_NAME_LABEL) != service:
                continue
            if seen is not None and int(seen.metadata.resource_version) >= revision:
                del self._items[(ns, name)]
                continue
            by_name[name] = written
        return list(by_name.values())


class EndpointSliceReconciler:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        services: Informer,
        pods: Informer,
        slices: Informer,
        nodes: Informer,
    ) -> None:
        self._objects = objects
        self._services = services
        self._pods = pods
        pods.add_index(NODE, pod_node)  # a node's pods, without reading every pod
        self._slices = slices
        self._nodes = nodes
        self._written = _Written()

    # ---------------------------------------------------------------- keys

    def keys_for_service(self, notice: Notice) -> list[str]:
        return [notice.key]

    def keys_for_pod(self, notice: Notice) -> list[str]:
        pod, old = notice.object, notice.old
        if notice.type is ChangeType.MODIFIED and old is not None and _seen(old) == _seen(pod):
            return []
        keys = []
        for service in self._services.list(pod.metadata.namespace):
            if _selects(service, pod.metadata.labels) or (
                old is not None and _selects(service, old.metadata.labels)
            ):
                keys.append(f"{service.metadata.namespace}/{service.metadata.name}")
        return keys

    def keys_for_slice(self, notice: Notice) -> list[str]:
        slice_ = notice.object
        name = slice_.metadata.labels.get(endpoints.SERVICE_NAME_LABEL)
        if not managed(slice_) or not name:
            return []
        return [f"{slice_.metadata.namespace}/{name}"]

    def keys_for_node(self, notice: Notice) -> list[str]:
        node, old = notice.object, notice.old
        if (
            notice.type is ChangeType.MODIFIED
            and old is not None
            and conditions.is_lost(old) == conditions.is_lost(node)
        ):
            return []
        name = node.metadata.name
        keys: set[str] = set()
        for pod in self._pods.indexed(NODE, name):
            for service in self._services.list(pod.metadata.namespace):
                if _selects(service, pod.metadata.labels):
                    keys.add(f"{service.metadata.namespace}/{service.metadata.name}")
        return sorted(keys)

    # ---------------------------------------------------------------- a pass

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        service = self._services.get(namespace, name)
        cached = [
            s
            for s in self._slices.list(namespace)
            if managed(s) and s.metadata.labels.get(endpoints.SERVICE_NAME_LABEL) == name
        ]
        existing = self._written.overlay(cached, namespace, name)
        if service is None or not service.spec.selector:
            for slice_ in existing:
                await self._delete(slice_)
            return Result()
        pods = [p for p in self._pods.list(namespace) if _selects(service, p.metadata.labels)]
        lost = frozenset(
            n.metadata.name for n in self._nodes.list() if conditions.is_lost(n)
        ) | frozenset(
            p.spec.node_name
            for p in pods
            if p.spec.node_name and self._nodes.get("", p.spec.node_name) is None
        )
        plan = endpoints.plan(service, endpoints.groups(service, pods, lost_nodes=lost), existing)
        for slice_ in plan.delete:
            await self._delete(slice_)
        for slice_ in plan.update:
            written = await self._objects.update(slice_)
            self._written.record(written)
        for slice_ in plan.create:
            with contextlib.suppress(AlreadyExists):  # a generated name taken: the next pass
                written = await self._objects.create(slice_)
                self._written.record(written)
        if not plan.empty:
            log.debug(
                "endpointslices.synced",
                service=key,
                created=len(plan.create),
                updated=len(plan.update),
                deleted=len(plan.delete),
                endpoints=sum(len(s.endpoints) for s in (*plan.create, *plan.update)),
            )
        return Result()

    async def _delete(self, slice_: objects_pb2.EndpointSlice) -> None:
        meta = slice_.metadata
        with contextlib.suppress(NotFound):
            deleted = await self._objects.delete(
                Kind.ENDPOINTSLICE, meta.namespace, meta.name, resource_version=None
            )
            self._written.record(deleted, deleted=True)


def _seen(pod: Message) -> tuple[object, ...]:
    """What of a pod its endpoints show (a change elsewhere needs no pass)."""
    return (
        pod.metadata.uid,
        pod.status.pod_ip,
        pod.status.phase,
        endpoints.is_ready(pod),
        pod.metadata.HasField("deletion_timestamp"),
        tuple(sorted(pod.metadata.labels.items())),
        pod.spec.node_name,
        pod.spec.hostname,
        pod.spec.subdomain,
    )


def endpointslice_controller(
    objects: ObjectStore,
    *,
    services: Informer,
    pods: Informer,
    slices: Informer,
    nodes: Informer,
    workers: int = 2,
    clock: Clock | None = None,
) -> Controller:
    """The EndpointSlice controller, subscribed to its four informers (which must also run)."""
    reconciler = EndpointSliceReconciler(
        objects, services=services, pods=pods, slices=slices, nodes=nodes
    )
    controller = Controller(
        "controller.endpointslice",
        reconciler,
        workers=workers,
        clock=clock,
        wait_for=(services, pods, slices, nodes),
    )

    def handler(keys_for: object) -> object:
        def enqueue(notice: Notice) -> None:
            for key in keys_for(notice):  # type: ignore[operator]
                controller.enqueue(key)

        return enqueue

    services.add_handler(handler(reconciler.keys_for_service))  # type: ignore[arg-type]
    pods.add_handler(handler(reconciler.keys_for_pod))  # type: ignore[arg-type]
    slices.add_handler(handler(reconciler.keys_for_slice))  # type: ignore[arg-type]
    nodes.add_handler(handler(reconciler.keys_for_node))  # type: ignore[arg-type]
    return controller

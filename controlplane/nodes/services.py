"""What every node's agent is told of Services, and when a pod being deleted may be stopped.

Vocabulary:
- services state (`ServicesState`): the cluster's Services and EndpointSlices as pushed to
  every agent with its pods (status and resourceVersion left out), the cluster's network,
  the addresses that take new traffic (`ready`), and a `version` that grows with each change;
- programmed: an agent answered a push of a state with "my data plane routes by it"; the
  state is then the node's `acked` one;
- draining: a pod being deleted (deletionTimestamp) that some live node may still send new
  connections to: its address is ready in the state that node last programmed. A draining
  pod stays in its node's pushed set, so its containers get no SIGTERM yet.

`ServicesView` builds the state from the Service and EndpointSlice informers, again only
when one of them changed, and calls `on_change` (the manager pokes every syncer). `Drains`
keeps what each node programmed and answers `drained(pod)`: True once no live node (Ready,
or not yet marked lost) has routed a new connection to the pod for `SETTLE_S` (requests sent
just before the last node stopped choosing it finish before SIGTERM), or once `MAX_DRAIN_S`
(at most the pod's grace period) have passed since it was deleted, so a node that stopped
answering cannot hold a deletion up for longer than that. Once drained, a pod stays drained.

Invariant: Kubernetes' order for a rolling update without dropped requests, enforced by the
control plane instead of a preStop sleep: the endpoint is marked terminating, every node's
data plane stops choosing it, and only then is the pod stopped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from controlplane.cache.informer import Informer, Notice
from controlplane.objects.endpoints import ready_addresses
from pilothouse.conditions import seconds
from pilothouse.v1 import objects_pb2

MAX_DRAIN_S = 10.0
SETTLE_S = 1.0
_FORGET_S = 600.0  # a drained pod's record is dropped this long after (it is gone by then)


@dataclass(frozen=True, slots=True)
class ClusterNetwork:
    """What every node's data plane and DNS need to know of the cluster's ranges."""

    service_cidr: str = ""
    cluster_cidr: str = ""
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True, slots=True)
class ServicesState:
    version: int
    services: tuple[objects_pb2.Service, ...]
    slices: tuple[objects_pb2.EndpointSlice, ...]
    network: ClusterNetwork
    ready: frozenset[str]


class ServicesView:
    """The current `ServicesState`, from two informers (which must also run)."""

    def __init__(
        self,
        *,
        services: Informer,
        slices: Informer,
        network: ClusterNetwork,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._services = services
        self._slices = slices
        self._network = network
        self._versions = itertools.count(1)
        self._state: ServicesState | None = None
        self.on_change = on_change
        services.add_handler(self._changed)
        slices.add_handler(self._changed)

    @property
    def synced(self) -> bool:
        return self._services.has_synced and self._slices.has_synced

    async def wait_synced(self) -> None:
        await self._services.wait_synced()
        await self._slices.wait_synced()

    def _changed(self, notice: Notice) -> None:
        self._state = None
        self.on_change()

    def current(self) -> ServicesState:
        if self._state is None:
            services = tuple(_bare(s) for s in _sorted(self._services.list()))
            slices = tuple(_bare(s) for s in _sorted(self._slices.list()))
            self._state = ServicesState(
                version=next(self._versions),
                services=services,
                slices=slices,
                network=self._network,
                ready=ready_addresses(slices),
            )
        return self._state


class Drains:
    """What each node's agent programmed, and whether a deleted pod may be stopped."""

    def __init__(self, *, max_drain: float = MAX_DRAIN_S, settle: float = SETTLE_S) -> None:
        self.max_drain = max_drain
        self.settle = settle
        self._acked: dict[str, ServicesState] = {}
        self._quiet: dict[str, float] = {}  # pod uid -> since when no live node routes to it
        self._drained: dict[str, float] = {}  # pod uid -> when it was found drained

    def programmed(self, node: str, state: ServicesState) -> None:
        self._acked[node] = state

    def forget(self, node: str) -> None:
        self._acked.pop(node, None)

    def acked(self, node: str) -> ServicesState | None:
        return self._acked.get(node)

    def deadline(self, pod: objects_pb2.Pod) -> float:
        """When a deleted pod is stopped whatever the nodes say (seconds since the epoch)."""
        meta = pod.metadata
        grace = float(meta.deletion_grace_period_seconds)
        start = seconds(meta.deletion_timestamp) - grace
        return start + min(grace, self.max_drain)

    def next_look(self, pod: objects_pb2.Pod) -> float:
        """When `drained(pod)` may change without anything else changing."""
        quiet = self._quiet.get(pod.metadata.uid)
        settled = quiet + self.settle if quiet is not None else float("inf")
        return min(self.deadline(pod), settled)

    def drained(self, pod: objects_pb2.Pod, *, live_nodes: Iterable[str], now: float) -> bool:
        if not pod.metadata.HasField("deletion_timestamp"):
            return False
        uid = pod.metadata.uid
        if uid in self._drained:
            return True
        if now >= self.deadline(pod) or not pod.status.pod_ip:
            return self._done(uid, now)
        address = pod.status.pod_ip
        for node in live_nodes:
            state = self._acked.get(node)
            if state is None or address in state.ready:
                self._quiet.pop(uid, None)
                return False
        quiet = self._quiet.setdefault(uid, now)
        return self._done(uid, now) if now >= quiet + self.settle else False

    def _done(self, uid: str, now: float) -> bool:
        self._quiet.pop(uid, None)
        self._drained[uid] = now
        for old, when in list(self._drained.items()):
            if now - when > _FORGET_S:
                del self._drained[old]
        return True


def _sorted(items: Iterable[object]) -> list[object]:
    return sorted(items, key=lambda o: (o.metadata.namespace, o.metadata.name))  # type: ignore[attr-defined]


def _bare(obj: object) -> object:
    """A copy without status and resourceVersion (not a change worth pushing)."""
    copy = type(obj)()  # type: ignore[operator]
    copy.CopyFrom(obj)  # type: ignore[attr-defined]
    if "status" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("status")
    copy.metadata.resource_version = ""
    return copy

"""The pods bound to each node, and the nodes that hold a pod being deleted, kept from the pod
informer's notices (node sync's view of "whose pods are these" at any cluster size).

Role: node sync asks, for one node at a time, which pods are bound to it; filtering every pod
of the cluster per push costs O(pods) each time (at 300 nodes it was 28 % of the control
plane's CPU). `PodsByNode` answers in O(pods on that node). A fencing push needs the answer
from the store itself (not the possibly lagging informer): `FreshPods` lists every pod once
for all the nodes that ask at about the same time (a restarted control plane's thousand
first pushes share a few listings, not a thousand).

Invariants: after every informer notice the index holds exactly the informer's pods with a
`spec.nodeName`, each under that node (a pod that moved or was deleted leaves its old node);
`deleting()` names exactly the nodes holding a pod with a deletionTimestamp. `version(node)`
changes whenever a change that is not `status_only` comes or goes on that node (and is None
while one of its pods is being deleted), so a push whose version has not moved may reuse the
desired set it made last time. The objects are
the informer's own: callers copy before changing them (`desired_pods` makes the copies a push
carries). `FreshPods.on(node)` answers from a listing begun after it was called, so it holds
every pod bound before the call (a linearizable read, shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from controlplane.cache.informer import NODE, Informer, Notice, pod_node
from controlplane.objects import ChangeType, ObjectStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

_Key = tuple[str, str]


def status_only(notice: Notice) -> bool:
    """Whether a pod change leaves every node's desired set as it was (a status write, or
    metadata other than the deletion mark: pushed again at the next resync)."""
    pod, old = notice.object, notice.old
    return (
        notice.type is ChangeType.MODIFIED
        and old is not None
        and old.spec == pod.spec
        and old.metadata.HasField("deletion_timestamp")
        == pod.metadata.HasField("deletion_timestamp")
        and old.metadata.uid == pod.metadata.uid
    )


class PodsByNode:
    """Pods by node name, from the pod informer (which must also run)."""

    def __init__(self, pods: Informer) -> None:
        pods.add_index(NODE, pod_node)  # the informer files its pods by node
        self._pods = pods
        self._node_of: dict[_Key, str] = {}
        self._deleting: dict[str, set[_Key]] = {}  # node -> its pods being deleted
        self._versions: dict[str, int] = {}  # node -> changes of its desired set
        self._changes = 0
        pods.add_handler(self._on_pod)

    def on(self, node: str) -> list[objects_pb2.Pod]:
        """The pods bound to `node` (the informer's objects)."""
        return self._pods.indexed(NODE, node)  # type: ignore[return-value]

    def version(self, node: str) -> int | None:
        """A number that changes whenever `node`'s desired set may have (never repeats);
        None while the node holds a pod being deleted (whether it still runs there changes
        with time as it drains, so its set must be made again each time)."""
        if node in self._deleting:
            return None
        return self._versions.get(node, 0)

    def deleting(self) -> set[str]:
        """The nodes that hold a pod being deleted."""
        return set(self._deleting)

    def _on_pod(self, notice: Notice) -> None:
        pod = notice.object
        key = (pod.metadata.namespace, pod.metadata.name)
        node = pod.spec.node_name
        if status_only(notice) and node and self._node_of.get(key) == node:
            return  # the same desired copy: the version stays
        self._drop(key)
        if notice.type is ChangeType.DELETED or not node:
            return
        self._bump(node)
        self._node_of[key] = node
        if pod.metadata.HasField("deletion_timestamp"):
            self._deleting.setdefault(node, set()).add(key)

    def _bump(self, node: str) -> None:
        self._changes += 1
        self._versions[node] = self._changes

    def _drop(self, key: _Key) -> None:
        node = self._node_of.pop(key, None)
        if node is None:
            return
        self._bump(node)
        deleting = self._deleting.get(node)
        if deleting is not None:
            deleting.discard(key)
            if not deleting:
                del self._deleting[node]


class FreshPods:
    """Pods by node from the store, one listing shared by the callers that wait for it."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects
        self._next: asyncio.Future[dict[str, list[objects_pb2.Pod]]] | None = None

    async def on(self, node: str) -> list[objects_pb2.Pod]:
        """The pods bound to `node` in a listing begun after this call."""
        if self._next is None:  # none waiting to begin: begin one
            self._next = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._list(self._next))
        by_node = await asyncio.shield(self._next)
        return by_node.get(node, [])

    async def _list(self, answer: asyncio.Future[dict[str, list[objects_pb2.Pod]]]) -> None:
        self._next = None  # from now on, callers need a listing begun after this one
        try:
            listing = await self._objects.list(Kind.POD)
        except BaseException as error:  # every waiter gets it (their session fails)
            answer.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        by_node: dict[str, list[objects_pb2.Pod]] = {}
        for pod in listing.items:
            if pod.spec.node_name:  # type: ignore[attr-defined]
                by_node.setdefault(pod.spec.node_name, []).append(pod)  # type: ignore[attr-defined]
        answer.set_result(by_node)


def desired_pods(
    pods: Iterable[objects_pb2.Pod],
    node: str,
    *,
    draining: Callable[[objects_pb2.Pod], bool] | None = None,
) -> list[objects_pb2.Pod]:
    """The node's desired pod set as pushed: bound to it, not being deleted (unless it is
    `draining`: deleted, but a node's data plane may still choose it), no status."""
    out = []
    for pod in pods:
        if pod.spec.node_name != node:
            continue
        if pod.metadata.HasField("deletion_timestamp") and not (draining and draining(pod)):
            continue
        copy = objects_pb2.Pod()
        copy.CopyFrom(pod)
        copy.ClearField("status")
        copy.metadata.resource_version = ""
        out.append(copy)
    out.sort(key=lambda p: (p.metadata.namespace, p.metadata.name))
    return out

"""The scheduler's picture of the cluster, kept up to date from informer notices instead of
rebuilt for every pod: one node info per known node, and the pods counted on each.

Vocabulary:
- counted pod: a pod holding resources on a node: bound (spec.nodeName), not finished.
- assumed pod: one this scheduler has decided to bind and counts on its node from the moment of
  the decision, before its binding is written or seen; it stays assumed until the pod informer
  shows it bound (anywhere) or deleted, or the binding fails (`forget`).

Invariants:
- Every pod is counted at most once, under its key, on one node name; an informer notice about
  a pod replaces what was counted for it, so an assumed pod confirmed by its bound version is
  still counted once. While assumed, notices of its unbound versions (written before the
  binding) change nothing.
- Notices may come in any order: a pod bound to a node not known yet (or deleted) is counted
  under that node's name and shows up in the node's info once the Node does; a Node deleted
  keeps its pods counted under its name until they go.
- `snapshot()` is O(nodes) (a copy of the map of immutable node infos); a pod change is
  O(pods on its node), a status report swaps the object held (older versions are not kept);
  a node's heartbeat costs a new node info sharing its pods and sums. Nothing here reads
  the network.
"""

from __future__ import annotations

from types import MappingProxyType

from controlplane.cache.informer import Notice, object_key
from controlplane.objects import ChangeType
from controlplane.scheduler.snapshot import NodeInfo, Snapshot, required_anti
from pilothouse.v1 import objects_pb2

Pod = objects_pb2.Pod
Node = objects_pb2.Node

_FINISHED = frozenset({"Succeeded", "Failed"})


def _counts(pod: Pod) -> bool:
    return bool(pod.spec.node_name) and pod.status.phase not in _FINISHED


def _same_for_scheduling(a: Pod, b: Pod) -> bool:
    """Nothing a filter or score reads differs (a status report changes none of it)."""
    return (
        a.metadata.uid == b.metadata.uid
        and a.spec == b.spec
        and a.metadata.labels == b.metadata.labels
        and a.metadata.owner_references == b.metadata.owner_references
    )


class ClusterView:
    """Node infos by node name, fed by `on_pod` and `on_node` (informer handlers)."""

    def __init__(self) -> None:
        self._infos: dict[str, NodeInfo] = {}
        self._counted: dict[str, Pod] = {}  # pod key -> the pod as counted
        self._on: dict[str, dict[str, Pod]] = {}  # node name -> pod key -> counted pod
        self._assumed: dict[str, Pod] = {}  # pod key -> the pod as this scheduler bound it
        self._anti: dict[str, Pod] = {}  # counted pods with required pod anti-affinity

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> Snapshot:
        anti = tuple(
            (self._infos[pod.spec.node_name], pod)
            for pod in self._anti.values()
            if pod.spec.node_name in self._infos
        )
        return Snapshot(nodes=MappingProxyType(dict(self._infos)), _anti=anti)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def counted(self, key: str) -> Pod | None:
        """The pod as counted (bound, assumed), or None."""
        return self._counted.get(key)

    def __len__(self) -> int:
        return len(self._infos)

    # ------------------------------------------------------------------ the scheduler's own

    def assume(self, pod: Pod) -> None:
        """Count `pod` (bound: spec.nodeName set) from now on, until confirmed or forgotten."""
        key = object_key(pod)
        self._assumed[key] = pod
        self._count(key, pod)

    def forget(self, key: str) -> None:
        """The binding of an assumed pod failed: it holds nothing anywhere (if still assumed)."""
        if self._assumed.pop(key, None) is not None:
            self._uncount(key)

    # ------------------------------------------------------------------ informer notices

    def on_pod(self, notice: Notice) -> None:
        pod = notice.object
        key = notice.key
        if notice.type is ChangeType.DELETED:
            assumed = self._assumed.get(key)
            if assumed is not None and assumed.metadata.uid != pod.metadata.uid:
                return  # an older pod of that name went; ours is still being bound
            self._assumed.pop(key, None)
            self._uncount(key)
            return
        if key in self._assumed:
            if not pod.spec.node_name:
                return  # a version from before our binding: the assumption stands
            del self._assumed[key]
        if _counts(pod):
            self._count(key, pod)
        else:
            self._uncount(key)

    def on_node(self, notice: Notice) -> None:
        node = notice.object
        name = node.metadata.name
        if notice.type is ChangeType.DELETED:
            self._infos.pop(name, None)
            return
        info = self._infos.get(name)
        if info is None:
            self._infos[name] = NodeInfo.of(node, self._on.get(name, {}).values())
        else:
            self._infos[name] = info.with_node(node)

    # ------------------------------------------------------------------ counting

    def _count(self, key: str, pod: Pod) -> None:
        before = self._counted.get(key)
        node = pod.spec.node_name
        if before is not None:
            if before.spec.node_name == node and _same_for_scheduling(before, pod):
                self._swap(key, before, pod)  # a status report: the sums stay
                return
            self._uncount(key)
        self._counted[key] = pod
        self._on.setdefault(node, {})[key] = pod
        if required_anti(pod):
            self._anti[key] = pod
        info = self._infos.get(node)
        if info is not None:
            self._infos[node] = info.with_pod(pod)

    def _swap(self, key: str, before: Pod, pod: Pod) -> None:
        """Hold the newer version (not two versions of every pod), counting the same."""
        node = pod.spec.node_name
        self._counted[key] = pod
        self._on[node][key] = pod
        if key in self._anti:
            self._anti[key] = pod
        info = self._infos.get(node)
        if info is not None:
            self._infos[node] = info.replacing(before, pod)

    def _uncount(self, key: str) -> None:
        pod = self._counted.pop(key, None)
        if pod is None:
            return
        node = pod.spec.node_name
        on = self._on[node]
        del on[key]
        if not on:
            del self._on[node]
        self._anti.pop(key, None)
        info = self._infos.get(node)
        if info is not None:
            self._infos[node] = info.without_pod(pod)

"""Node sync's own indexes at scale (issue 17): the pods bound to each node and the nodes
holding a pod being deleted (`PodsByNode`) always equal what filtering every pod would give;
the node list's changes (`PeersView.changes`) rebuild the whole list from any version kept.
"""

from __future__ import annotations

import asyncio

from controlplane.cache.informer import Informer
from controlplane.nodes.peers import PeersView
from controlplane.nodes.podindex import PodsByNode
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.waiting import eventually


def _filtered(informer: Informer, node: str) -> set[str]:
    return {p.metadata.name for p in informer.list() if p.spec.node_name == node}


async def test_pods_by_node_follows_binds_deletions_and_deletes() -> None:
    objects = ObjectStore(MemoryStore(), graceful_pods=True)
    pods = Informer(objects, Kind.POD)
    early = factories.pod(name="early", node="n1")
    await objects.create(early)  # before the index: replayed to it
    task = asyncio.create_task(pods.run())
    try:
        await pods.wait_synced()
        index = PodsByNode(pods)
        for i in range(6):
            await objects.create(factories.pod(name=f"p{i}", node=f"n{i % 3}"))
        await objects.create(factories.pod(name="pending"))  # not bound: on no node
        await eventually(lambda: len(pods) == 8, "the informer has every pod")
        for node in ("n0", "n1", "n2"):
            assert {p.metadata.name for p in index.on(node)} == _filtered(pods, node)
        assert index.on("") == [] and index.deleting() == set()

        await objects.delete(Kind.POD, "default", "p1")  # graceful: marked, still bound
        await eventually(lambda: index.deleting() == {"n1"}, "n1 holds a pod being deleted")
        await objects.delete(Kind.POD, "default", "p0", grace_period_seconds=0)
        await eventually(lambda: "p0" not in _filtered(pods, "n0"), "p0 gone")
        assert {p.metadata.name for p in index.on("n0")} == _filtered(pods, "n0") == {"p3"}
        assert {p.metadata.name for p in index.on("n1")} == _filtered(pods, "n1")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_nodes_version_moves_with_its_desired_set_not_with_status_writes() -> None:
    """Node sync reuses a node's last desired set while `version(node)` has not moved: a
    status write must not move it (30,000 pods going Running would copy every node's pods
    again each time), a bind, a spec change or a deletion must."""
    objects = ObjectStore(MemoryStore(), graceful_pods=True)
    pods = Informer(objects, Kind.POD)
    task = asyncio.create_task(pods.run())
    try:
        await pods.wait_synced()
        index = PodsByNode(pods)
        a = await objects.create(factories.pod(name="a", node="n1"))
        await eventually(lambda: len(index.on("n1")) == 1, "a is on n1")
        bound = index.version("n1")
        other = index.version("n2")

        a.status.phase = "Running"
        a = await objects.update_status(a)
        await eventually(
            lambda: index.on("n1")[0].status.phase == "Running", "the index has the new status"
        )
        assert index.version("n1") == bound, "a status write moved the node's version"

        b = await objects.create(factories.pod(name="b", node="n1"))
        await eventually(lambda: len(index.on("n1")) == 2, "b is on n1")
        assert index.version("n1") != bound
        assert index.version("n2") == other, "a bind elsewhere moved n2's version"

        bound = index.version("n1")
        b.spec.containers[0].image = "busybox:other"
        await objects.update(b)
        await eventually(lambda: index.version("n1") != bound, "a spec change moves it")

        await objects.delete(Kind.POD, "default", "a")  # graceful: marked, still bound
        await eventually(lambda: index.version("n1") is None, "None while a pod drains")
        await objects.delete(Kind.POD, "default", "a", grace_period_seconds=0)
        await eventually(lambda: index.version("n1") is not None, "a number once it is gone")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_node_list_changes_rebuild_the_whole_list_from_any_kept_version() -> None:
    objects = ObjectStore(MemoryStore())
    nodes = Informer(objects, Kind.NODE)
    told: list[int] = []
    view = PeersView(nodes=nodes, on_change=lambda: told.append(1))
    task = asyncio.create_task(nodes.run())
    try:
        registry = NodeRegistry(objects)
        states = []
        for i in range(5):
            report = factories.node_report(name=f"n{i}", address=f"10.0.0.{i + 1}:7071")
            await registry.register(report, instance_id=f"i-{i}")
            await eventually(lambda i=i: len(view.current().peers) == i + 1, f"n{i} listed")
            states.append(view.current())
        await objects.delete(Kind.NODE, "", "n2")
        await eventually(lambda: len(view.current().peers) == 4, "n2 left the list")
        now = view.current()
        for old in states:
            changes = view.changes(old.version)
            assert changes is not None and changes.version == now.version
            rebuilt = {p.name: p for p in old.peers}
            for name in changes.removed:
                rebuilt.pop(name, None)
            rebuilt.update((p.name, p) for p in changes.changed)
            assert tuple(sorted(rebuilt.values())) == now.peers
        assert view.changes(now.version) is not None and not view.changes(now.version).changed
        assert view.changes(0) is None, "version 0 (nothing held) has no changes: the whole list"
        assert view.changes(now.version + 1) is None, "a version from another history"
        await eventually(lambda: bool(told), "a change is told")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""Graceful pod deletion in the object layer, and when a deleted pod may be stopped (Drains):
a running pod is marked (deletionTimestamp = now + its grace period) instead of removed, stays
marked whatever writes follow, and goes at once when unscheduled, finished or forced; it is
stopped only once no live node's data plane still routes to it, or its drain time is up.
"""

from __future__ import annotations

import asyncio

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.podgc import PodGarbageCollector
from controlplane.nodes.services import ClusterNetwork, Drains, ServicesState
from controlplane.objects import ObjectStore
from controlplane.store import NotFound
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories

NOW = 1_700_000_000.0


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore(MemoryStore(), clock=lambda: NOW, graceful_pods=True)


async def test_a_running_pod_is_marked_not_removed(objects: ObjectStore) -> None:
    await objects.create(factories.pod(name="a", node="n1", grace=7, phase="Running"))
    marked = await objects.delete(Kind.POD, "default", "a")
    assert marked.metadata.deletion_timestamp.seconds == NOW + 7
    assert marked.metadata.deletion_grace_period_seconds == 7
    stored = await objects.get(Kind.POD, "default", "a")
    assert stored.metadata.HasField("deletion_timestamp"), "the pod lost its mark"
    again = await objects.delete(Kind.POD, "default", "a")
    assert again.metadata.deletion_timestamp == marked.metadata.deletion_timestamp


async def test_the_mark_survives_later_writes(objects: ObjectStore) -> None:
    await objects.create(factories.pod(name="a", node="n1", phase="Running"))
    await objects.delete(Kind.POD, "default", "a")
    stale = factories.pod(name="a", node="n1", phase="Running")  # a writer's old copy
    stale.metadata.labels["x"] = "y"
    updated = await objects.update(stale)
    assert updated.metadata.HasField("deletion_timestamp"), "an update un-deleted the pod"


@pytest.mark.parametrize(
    ("node", "phase", "grace"),
    [("", "Pending", None), ("n1", "Succeeded", None), ("n1", "Running", 0)],
    ids=["unscheduled", "finished", "forced"],
)
async def test_pods_that_need_no_stopping_go_at_once(
    objects: ObjectStore, node: str, phase: str, grace: int | None
) -> None:
    await objects.create(factories.pod(name="a", node=node, phase=phase))
    await objects.delete(Kind.POD, "default", "a", grace_period_seconds=grace)
    with pytest.raises(NotFound):
        await objects.get(Kind.POD, "default", "a")


async def test_without_graceful_pods_a_delete_removes() -> None:
    objects = ObjectStore(MemoryStore())
    await objects.create(factories.pod(name="a", node="n1", phase="Running"))
    await objects.delete(Kind.POD, "default", "a")
    with pytest.raises(NotFound):
        await objects.get(Kind.POD, "default", "a")


def state(version: int, *ready: str) -> ServicesState:
    return ServicesState(version, (), (), ClusterNetwork(), frozenset(ready))


def deleting(ip: str = "10.244.1.5", *, at: float = NOW, grace: int = 30) -> objects_pb2.Pod:
    pod = factories.pod(name="a", node="n1")
    pod.status.pod_ip = ip
    pod.metadata.deletion_timestamp.FromSeconds(int(at) + grace)
    pod.metadata.deletion_grace_period_seconds = grace
    return pod


def test_a_pod_drains_once_no_live_node_routes_to_it() -> None:
    drains = Drains(max_drain=10, settle=0)
    pod = deleting()
    drains.programmed("n1", state(1, "10.244.1.5"))
    drains.programmed("n2", state(1, "10.244.1.5"))
    live = ("n1", "n2")
    assert not drains.drained(pod, live_nodes=live, now=NOW + 1)
    drains.programmed("n1", state(2))
    assert not drains.drained(pod, live_nodes=live, now=NOW + 1), "n2 still routes to it"
    drains.programmed("n2", state(2))
    assert drains.drained(pod, live_nodes=live, now=NOW + 1)


def test_a_node_that_is_not_live_does_not_hold_a_drain() -> None:
    drains = Drains(max_drain=10, settle=0)
    drains.programmed("n1", state(2))
    drains.programmed("lost", state(1, "10.244.1.5"))
    assert drains.drained(deleting(), live_nodes=("n1",), now=NOW + 1)
    other = Drains(max_drain=10, settle=0)
    other.programmed("n1", state(2))
    assert not other.drained(deleting(), live_nodes=("n1", "silent"), now=NOW + 1), (
        "a live node that never programmed anything may still route to the pod"
    )


def test_the_drain_ends_by_its_deadline_and_the_grace_period() -> None:
    drains = Drains(max_drain=10, settle=0)
    drains.programmed("n1", state(1, "10.244.1.5"))
    assert not drains.drained(deleting(), live_nodes=("n1",), now=NOW + 9.9)
    assert drains.drained(deleting(), live_nodes=("n1",), now=NOW + 10)
    assert drains.drained(deleting(grace=2), live_nodes=("n1",), now=NOW + 2), (
        "a drain outlived the pod's own grace period"
    )
    assert drains.drained(deleting(ip=""), live_nodes=("n1",), now=NOW), "no address: no drain"


async def test_pod_gc_removes_a_deleted_pod_nobody_finished(objects: ObjectStore) -> None:
    now = [NOW]
    pods = Informer(objects, Kind.POD)
    collector = PodGarbageCollector(objects, pods=pods, now=lambda: now[0], slack=15)
    await objects.create(factories.pod(name="a", node="lost", grace=5, phase="Running"))
    await objects.delete(Kind.POD, "default", "a")
    task = asyncio.create_task(pods.run())
    try:
        await pods.wait_synced()
        result = await collector.reconcile("default/a")
        assert result.requeue_after == pytest.approx(20), "not looked at again when due"
        now[0] += 20
        await collector.reconcile("default/a")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(NotFound):
        await objects.get(Kind.POD, "default", "a")


def test_a_drained_pod_waits_the_settle_time_and_stays_drained() -> None:
    drains = Drains(max_drain=10, settle=1)
    drains.programmed("n1", state(2))
    pod = deleting()
    assert not drains.drained(pod, live_nodes=("n1",), now=NOW + 2), "released before settling"
    assert drains.next_look(pod) == NOW + 3
    assert drains.drained(pod, live_nodes=("n1",), now=NOW + 3)
    drains.programmed("n1", state(3, "10.244.1.5"))  # whatever comes later
    assert drains.drained(pod, live_nodes=("n1",), now=NOW + 3.5), "a drained pod came back"

"""Standalone ReplicaSets and ReplicationControllers over the memory store: the count kept,
orphans adopted by selector, pods released when their labels stop matching, a Deployment's
ReplicaSet left alone."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.deployment import replicaset
from controlplane.controllers.replicaset import ReplicaSetReconciler
from controlplane.objects import ObjectStore, owners
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import settle
from pilothouse import manifests
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.waiting import edited, eventually
from tests.unit.workload_support import Plane, set_phase


def plane() -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            ReplicaSetReconciler(
                objects=objects,
                kind=kind,
                owners_informer=informers[kind],
                pods=informers[Kind.POD],
            ).controller()
            for kind in (Kind.REPLICASET, Kind.REPLICATIONCONTROLLER)
        ]

    return Plane((Kind.REPLICASET, Kind.REPLICATIONCONTROLLER, Kind.POD), build)


def owned(p: Plane, uid: str) -> list:
    return [x for x in p.pods() if owners.owned_by(x, uid) and is_active(x)]


async def test_a_replicaset_keeps_its_count_and_adopts_and_releases_by_selector() -> None:
    async with plane() as p:
        orphan = factories.pod(name="stray", labels={"app": "web"}, uid="")
        await p.objects.create(orphan)
        rs = factories.replica_set(name="web", replicas=3)
        manifests.set_defaults(rs)
        rs = await p.objects.create(rs)
        uid = rs.metadata.uid
        await eventually(lambda: len(owned(p, uid)) == 3, "three pods, the stray adopted")
        assert "stray" in [x.metadata.name for x in owned(p, uid)], "the orphan was not adopted"
        # A pod whose labels stop matching is released and replaced.
        await edited(
            p.objects, Kind.POD, "default", "stray", lambda x: x.metadata.labels.update(app="debug")
        )
        await eventually(
            lambda: owners.controller_of(p.informers[Kind.POD].get("default", "stray")) is None,
            "the relabelled pod is still owned",
        )
        await eventually(lambda: len(owned(p, uid)) == 3, "no replacement for the released pod")
        assert len(p.pods()) == 4, "the released pod lives on"
        # A finished pod is replaced; scaling down removes the surplus.
        victim = owned(p, uid)[0]
        await set_phase(p.objects, victim, "Failed")
        await eventually(lambda: len(owned(p, uid)) == 3, "the failed pod was not replaced")
        await edited(
            p.objects, Kind.REPLICASET, "default", "web", lambda x: setattr(x.spec, "replicas", 1)
        )
        await eventually(lambda: len(owned(p, uid)) == 1, "scale down to 1")
        await eventually(
            lambda: p.informers[Kind.REPLICASET].get("default", "web").status.replicas == 1,
            "status.replicas",
        )


async def test_a_deployments_replicaset_is_left_to_the_deployment() -> None:
    async with plane() as p:
        rs = factories.replica_set(name="web-abc", replicas=2)
        rs.metadata.owner_references.add(kind="Deployment", name="web", uid="d1", controller=True)
        await p.objects.create(rs)
        await settle()
        assert p.pods() == []


async def test_a_replication_controller_runs_its_pods() -> None:
    async with plane() as p:
        rc = factories.replication_controller(replicas=2)
        manifests.set_defaults(rc)
        rc = await p.objects.create(rc)
        await eventually(lambda: len(owned(p, rc.metadata.uid)) == 2, "two redis pods")
        pod = owned(p, rc.metadata.uid)[0]
        assert owners.controller_of(pod).kind == "ReplicationController"
        assert pod.metadata.name.startswith("redis-")


async def test_cancelled_bounded_writes_leave_no_write_unawaited() -> None:
    """A controller stopped during a batch of writes: the writes that never began are
    closed, not left as coroutines never awaited (Python warns about those)."""

    began = 0
    gate, full = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        nonlocal began
        began += 1
        if began == replicaset.IN_FLIGHT:
            full.set()
        await gate.wait()

    writes = [write() for _ in range(replicaset.IN_FLIGHT + 5)]
    batch = asyncio.create_task(replicaset._bounded(iter(writes)))
    await full.wait()
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert began == replicaset.IN_FLIGHT
    assert all(inspect.getcoroutinestate(w) == inspect.CORO_CLOSED for w in writes)

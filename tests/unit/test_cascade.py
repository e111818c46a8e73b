"""Deleting owners and namespaces over the memory store: `--cascade` background, foreground
and orphan for every owner kind the garbage collector follows, and a namespace emptied before
it goes (nothing of it left in the store)."""

from __future__ import annotations

import time

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.garbage import garbage_collector
from controlplane.controllers.job import job_controller
from controlplane.controllers.namespace import QUIET, namespace_controller
from controlplane.controllers.replicaset import ReplicaSetReconciler
from controlplane.objects import Invalid, ObjectStore, deletion, owners
from controlplane.objects.deletion import Propagation
from controlplane.store import NotFound
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane

KINDS = (Kind.REPLICASET, Kind.JOB, Kind.POD, Kind.NAMESPACE, Kind.EVENT)


def plane() -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        followed = {k: informers[k] for k in (Kind.REPLICASET, Kind.JOB, Kind.POD)}
        return [
            ReplicaSetReconciler(
                objects=objects,
                kind=Kind.REPLICASET,
                owners_informer=informers[Kind.REPLICASET],
                pods=informers[Kind.POD],
            ).controller(),
            job_controller(objects, jobs=informers[Kind.JOB], pods=informers[Kind.POD]),
            garbage_collector(objects, informers=followed),
            namespace_controller(objects, namespaces_informer=informers[Kind.NAMESPACE]),
        ]

    return Plane(KINDS, build)


async def replica_set(p: Plane, replicas: int = 2) -> str:
    rs = factories.replica_set(name="web", replicas=replicas)
    manifests.set_defaults(rs)
    created = await p.objects.create(rs)
    await eventually(lambda: len(p.pods()) == replicas, "the ReplicaSet's pods")
    return created.metadata.uid


async def gone(objects: ObjectStore, kind: Kind, namespace: str, name: str) -> bool:
    try:
        await objects.get(kind, namespace, name)
    except NotFound:
        return True
    return False


async def test_background_deletes_the_owner_then_its_pods() -> None:
    async with plane() as p:
        await replica_set(p)
        await deletion.delete(p.objects, Kind.REPLICASET, "default", "web", now=time.time())
        assert await gone(p.objects, Kind.REPLICASET, "default", "web")
        await eventually(lambda: p.pods() == [], "the pods outlived their ReplicaSet")


async def test_foreground_keeps_the_owner_until_its_pods_are_gone() -> None:
    async with plane() as p:
        await replica_set(p)
        marked = await deletion.delete(
            p.objects,
            Kind.REPLICASET,
            "default",
            "web",
            propagation=Propagation.FOREGROUND,
            now=time.time(),
        )
        assert marked.metadata.HasField("deletion_timestamp")
        assert list(marked.metadata.finalizers) == ["foregroundDeletion"]
        await eventually(lambda: p.pods() == [], "the pods were not deleted first")
        await eventually(
            lambda: gone(p.objects, Kind.REPLICASET, "default", "web"),
            "the ReplicaSet stayed after its pods went",
        )


async def test_orphan_leaves_the_pods_running_and_unowned() -> None:
    async with plane() as p:
        await replica_set(p)
        names = [x.metadata.name for x in p.pods()]
        await deletion.delete(
            p.objects,
            Kind.REPLICASET,
            "default",
            "web",
            propagation=Propagation.ORPHAN,
            now=time.time(),
        )
        await eventually(
            lambda: gone(p.objects, Kind.REPLICASET, "default", "web"), "the owner stayed"
        )
        await eventually(
            lambda: all(owners.controller_of(x) is None for x in p.pods()), "still owned"
        )
        assert [x.metadata.name for x in p.pods()] == names, "orphaned pods were deleted"


async def test_deleting_a_namespace_empties_it_and_leaves_nothing() -> None:
    async with plane() as p:
        await p.objects.create(factories.namespace(name="team-a"))
        rs = factories.replica_set(name="web", namespace="team-a", replicas=2)
        manifests.set_defaults(rs)
        await p.objects.create(rs)
        job = factories.job(namespace="team-a", parallelism=2, completions=4)
        manifests.set_defaults(job)
        await p.objects.create(job)
        await p.objects.create(factories.pod(name="lone", namespace="team-a", uid=""))
        await eventually(lambda: len(p.pods("team-a")) == 5, "the namespace's pods")
        marked = await deletion.delete(p.objects, Kind.NAMESPACE, "", "team-a", now=time.time())
        assert marked.status.phase == "Terminating"
        await eventually(
            lambda: gone(p.objects, Kind.NAMESPACE, "", "team-a"),
            "the namespace was never deleted",
            within=5 + QUIET * 3,
        )
        entries = await p.objects.store.list("/pilothouse/")
        left = [e.key for e in entries.entries if "/team-a" in e.key]
        assert left == [], f"left in the store: {left}"


async def test_default_may_not_be_deleted() -> None:
    objects = ObjectStore(MemoryStore())
    with pytest.raises(Invalid, match="may not be deleted"):
        await deletion.delete(objects, Kind.NAMESPACE, "", "default", now=time.time())

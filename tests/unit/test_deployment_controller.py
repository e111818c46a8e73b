"""The deployment controller over the in-memory store: the pods a user gets for a Deployment,
their names, their status counts, and what happens on scale, template change, crash and delete."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.deployment import deployment_controller, revisions
from controlplane.controllers.garbage import garbage_collector
from controlplane.objects import ObjectStore, owners
from controlplane.reconcile.clock import Clock, ManualClock, settle
from controlplane.store import Unavailable
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import edited, idle

# The Deployment these tests run: web, 3 replicas of busybox:1, with the manifest's defaults
# for the progress deadline (600 s) and the revision history (10).
make_deployment = functools.partial(
    factories.deployment, replicas=3, image="busybox:1", deadline=600, history_limit=10
)
WEB = (Kind.DEPLOYMENT, "default", "web")
NAME = re.compile(r"^web-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")


class Plane:
    """The deployment controller and garbage collector with their informers, over one store."""

    def __init__(
        self, store: MemoryStore, *, objects: ObjectStore | None = None, clock: Clock | None = None
    ) -> None:
        self.objects = objects or ObjectStore(store)
        self.informers = {
            kind: Informer(self.objects, kind, clock=clock)
            for kind in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD)
        }
        self.controllers = [
            deployment_controller(
                self.objects,
                deployments=self.informers[Kind.DEPLOYMENT],
                replicasets=self.informers[Kind.REPLICASET],
                pods=self.informers[Kind.POD],
                clock=clock,
            ),
            garbage_collector(self.objects, informers=self.informers),
        ]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Plane:
        for runnable in [*self.informers.values(), *self.controllers]:
            self.tasks.append(asyncio.create_task(runnable.run(), name=runnable.name))
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def eventually(check: Callable[[], object], what: str, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result is None or result is True:
                return
            error: str = f"got {result!r}"
        except AssertionError as failed:
            error = str(failed)
        if loop.time() > deadline:
            pytest.fail(f"{what}: {error}")
        await asyncio.sleep(0.01)


async def pods_of(objects: ObjectStore) -> list[objects_pb2.Pod]:
    return list((await objects.list(Kind.POD, "default")).items)


async def wait_for_pods(objects: ObjectStore, count: int) -> list[objects_pb2.Pod]:
    async def check() -> object:
        pods = await pods_of(objects)
        return True if len(pods) == count else f"{len(pods)} pods"

    await eventually(check, f"the Deployment never had {count} pods")
    await settle()
    pods = await pods_of(objects)
    assert len(pods) == count, f"{len(pods)} pods after settling, want {count}"
    return pods


async def set_ready(objects: ObjectStore, pod: objects_pb2.Pod, *, at: float, node: str = "n1"):
    """What the node syncer will do: bind and report the pod Running and Ready."""
    fresh = await objects.get(Kind.POD, "default", pod.metadata.name)
    fresh.spec.node_name = node
    fresh = await objects.update(fresh)
    fresh.status.phase = "Running"
    condition = fresh.status.conditions.add(type="Ready", status="True")
    condition.last_transition_time.FromNanoseconds(int(at * 1e9))
    await objects.update_status(fresh)


async def test_creates_exactly_replicas_pods_with_generated_owned_names() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        deployment = await plane.objects.create(make_deployment(replicas=3))
        pods = await wait_for_pods(plane.objects, 3)
        replicasets = (await plane.objects.list(Kind.REPLICASET, "default")).items
        assert len(replicasets) == 1, "one template should make one ReplicaSet"
        rs = replicasets[0]
        hash_ = revisions.template_hash(deployment.spec.template)
        assert rs.metadata.name == f"web-{hash_}"
        assert rs.metadata.annotations[revisions.REVISION_ANNOTATION] == "1"
        assert owners.owned_by(rs, deployment.metadata.uid)
        assert len({p.metadata.name for p in pods}) == 3, "two pods got the same name"
        assert all(p.metadata.generate_name == f"{rs.metadata.name}-" for p in pods), (
            "pods are not named from generateName <replicaset>- as Kubernetes names them"
        )
        for pod in pods:
            assert NAME.match(pod.metadata.name), f"pod name {pod.metadata.name} is malformed"
            assert pod.metadata.labels == {"app": "web", "pod-template-hash": hash_}
            assert owners.owned_by(pod, rs.metadata.uid), "pod is not owned by its ReplicaSet"
            assert pod.metadata.owner_references[0].kind == "ReplicaSet"
            assert pod.spec.node_name == "", "a new pod must wait for the scheduler"
            assert pod.status.phase == "Pending"
            assert pod.spec.containers[0].image == "busybox:1"

        async def status_ok() -> object:
            d = await plane.objects.get(Kind.DEPLOYMENT, "default", "web")
            s = d.status
            return (s.replicas, s.updated_replicas, s.ready_replicas, s.observed_generation) == (
                3,
                3,
                0,
                1,
            ) or str(s)

        await eventually(status_ok, "status did not count 3 updated, 0 ready pods")


async def test_scale_up_and_down_removes_unscheduled_and_unready_pods_first() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=4))
        pods = sorted(await wait_for_pods(plane.objects, 4), key=lambda p: p.metadata.name)
        keep = pods[:2]
        for pod in keep:
            await set_ready(plane.objects, pod, at=0)
        await edited(plane.objects, *WEB, lambda d: setattr(d.spec, "replicas", 2))
        left = await wait_for_pods(plane.objects, 2)
        assert {p.metadata.name for p in left} == {p.metadata.name for p in keep}, (
            "scale-down removed running Ready pods instead of the Pending ones"
        )
        await edited(plane.objects, *WEB, lambda d: setattr(d.spec, "replicas", 6))
        grown = await wait_for_pods(plane.objects, 6)
        assert len({p.metadata.name for p in grown}) == 6

        async def status_ok() -> object:
            s = (await plane.objects.get(Kind.DEPLOYMENT, "default", "web")).status
            return (s.replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas) == (
                6,
                2,
                2,
                4,
            ) or str(s)

        await eventually(status_ok, "status counts after scaling to 6 with 2 Ready pods")
        s = (await plane.objects.get(Kind.DEPLOYMENT, "default", "web")).status
        available = {c.type: c for c in s.conditions}["Available"]
        assert available.status == "False", "4 of 6 unavailable is below the 25% allowed"


class CrashingObjects(ObjectStore):
    """An ObjectStore whose process 'dies' (every call fails) after `pods_before_crash` pods."""

    def __init__(self, store: MemoryStore, pods_before_crash: int) -> None:
        super().__init__(store)
        self.left = pods_before_crash

    async def create(self, message):  # type: ignore[override]
        if isinstance(message, objects_pb2.Pod):
            if self.left <= 0:
                raise Unavailable("control plane killed")
            self.left -= 1
        return await super().create(message)


async def test_crash_mid_creation_then_restart_creates_no_duplicates() -> None:
    store = MemoryStore()
    async with Plane(store, objects=CrashingObjects(store, pods_before_crash=3)) as plane:
        await plane.objects.create(make_deployment(replicas=8))
        await wait_for_pods(plane.objects, 3)
    async with Plane(store) as restarted:
        pods = await wait_for_pods(restarted.objects, 8)
        await idle(*restarted.controllers)
        assert len(await pods_of(restarted.objects)) == 8, "restart created duplicates"
        rs_uids = {p.metadata.owner_references[0].uid for p in pods}
        assert len(rs_uids) == 1, "pods of one template ended up in several ReplicaSets"


async def test_template_change_with_recreate_replaces_pods_with_a_new_revision() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        recreate = make_deployment(replicas=3)
        recreate.spec.strategy.type = "Recreate"
        await plane.objects.create(recreate)
        old = await wait_for_pods(plane.objects, 3)
        d = await edited(
            plane.objects,
            *WEB,
            lambda d: setattr(d.spec.template.spec.containers[0], "image", "busybox:2"),
        )
        new_hash = revisions.template_hash(d.spec.template)

        async def replaced() -> object:
            pods = await pods_of(plane.objects)
            hashes = sorted(p.metadata.labels["pod-template-hash"] for p in pods)
            return hashes == [new_hash] * 3 or hashes

        await eventually(replaced, "old-template pods were not replaced by 3 new ones")
        pods = await pods_of(plane.objects)
        assert not {p.metadata.name for p in pods} & {p.metadata.name for p in old}
        assert all(p.spec.containers[0].image == "busybox:2" for p in pods)
        rss = {
            rs.metadata.annotations[revisions.REVISION_ANNOTATION]: rs
            for rs in (await plane.objects.list(Kind.REPLICASET, "default")).items
        }
        assert sorted(rss) == ["1", "2"], "each template should be a numbered revision"
        assert rss["1"].spec.replicas == 0 and rss["2"].spec.replicas == 3

        async def annotated() -> object:
            d = await plane.objects.get(Kind.DEPLOYMENT, "default", "web")
            return d.metadata.annotations.get(revisions.REVISION_ANNOTATION) == "2"

        await eventually(annotated, "Deployment not annotated with revision 2")


async def test_paused_deployment_keeps_its_template_but_still_scales() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=2))
        before = await wait_for_pods(plane.objects, 2)

        def pause(d: objects_pb2.Deployment) -> None:
            d.spec.paused = True
            d.spec.replicas = 3
            d.spec.template.spec.containers[0].image = "busybox:2"

        await edited(plane.objects, *WEB, pause)
        pods = await wait_for_pods(plane.objects, 3)
        hashes = {p.metadata.labels["pod-template-hash"] for p in pods}
        assert hashes == {before[0].metadata.labels["pod-template-hash"]}, (
            "a paused Deployment rolled out its new template"
        )
        assert len((await plane.objects.list(Kind.REPLICASET, "default")).items) == 1


async def test_available_replicas_honour_min_ready_seconds_on_virtual_time() -> None:
    clock = ManualClock()
    store = MemoryStore()
    async with Plane(store, objects=ObjectStore(store, clock=clock.now), clock=clock) as plane:
        await plane.objects.create(make_deployment(replicas=2, min_ready=10))
        pods = await wait_for_pods(plane.objects, 2)
        for pod in pods:
            await set_ready(plane.objects, pod, at=clock.now())

        async def counts(ready: int, available: int) -> object:
            s = (await plane.objects.get(Kind.DEPLOYMENT, "default", "web")).status
            return (s.ready_replicas, s.available_replicas) == (ready, available) or str(s)

        await eventually(lambda: counts(2, 0), "2 Ready pods should not be available yet")
        await clock.advance(10)
        await eventually(lambda: counts(2, 2), "pods Ready for minReadySeconds became available")
        d = await plane.objects.get(Kind.DEPLOYMENT, "default", "web")
        conditions = {c.type: (c.status, c.reason) for c in d.status.conditions}
        assert conditions == {
            "Available": ("True", "MinimumReplicasAvailable"),
            "Progressing": ("True", "NewReplicaSetAvailable"),
        }


async def test_status_is_not_rewritten_when_nothing_changed() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=2))
        await wait_for_pods(plane.objects, 2)
        await idle(*plane.controllers)
        version = (await plane.objects.get(Kind.DEPLOYMENT, "default", "web")).metadata
        plane.controllers[0].enqueue("default/web")
        plane.controllers[0].enqueue("default/web")
        await idle(*plane.controllers)
        again = (await plane.objects.get(Kind.DEPLOYMENT, "default", "web")).metadata
        assert again.resource_version == version.resource_version, "an idle resync wrote status"


async def test_deleting_the_deployment_deletes_its_replicasets_and_pods() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=5))
        await wait_for_pods(plane.objects, 5)
        await plane.objects.delete(Kind.DEPLOYMENT, "default", "web")
        await wait_for_pods(plane.objects, 0)

        async def no_replicasets() -> object:
            return not (await plane.objects.list(Kind.REPLICASET, "default")).items

        await eventually(no_replicasets, "ReplicaSets outlived their Deployment")
        # A new Deployment of the same name starts afresh and is not confused by the old one.
        await plane.objects.create(make_deployment(replicas=2))
        await wait_for_pods(plane.objects, 2)


async def test_leftovers_of_a_deleted_deployment_are_collected_after_a_restart() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=3))
        await wait_for_pods(plane.objects, 3)
    # The control plane was down when the Deployment was deleted.
    await ObjectStore(store).delete(Kind.DEPLOYMENT, "default", "web")
    async with Plane(store) as restarted:
        await wait_for_pods(restarted.objects, 0)

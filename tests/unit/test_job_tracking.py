"""Job counts with the job-tracking finalizer (Kubernetes' tracking with finalizers), over the
memory store: a finished pod deleted at once, by anyone, still counts exactly once; a running
pod deleted counts as failed; pods lose the finalizer once counted, and go when deleted; a
deleted Job lets its pods go; every step of the counting may be repeated after a crash; the
store holds a deleted pod while it has a finalizer.

A fake node moves pods through their phases (`set_phase`), as an agent's reports would.
"""

from __future__ import annotations

import contextlib

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.job import job_controller, tracking
from controlplane.objects import ObjectStore, deletion
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store import NotFound
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.conditions import find_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane, set_phase

FINALIZER = "batch.kubernetes.io/job-tracking"


def plane(
    *,
    clock: ManualClock | None = None,
    graceful: bool = False,
    objects: ObjectStore | None = None,
) -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            job_controller(objects, jobs=informers[Kind.JOB], pods=informers[Kind.POD], clock=clock)
        ]

    objects = objects or ObjectStore(MemoryStore(), graceful_pods=graceful)
    return Plane((Kind.JOB, Kind.POD), build, clock=clock, objects=objects)


async def create(p: Plane, job: objects_pb2.Job) -> None:
    manifests.set_defaults(job)
    assert manifests.validate(job) == []
    await p.objects.create(job)


def active(p: Plane) -> list[objects_pb2.Pod]:
    return [pod for pod in p.pods() if is_active(pod)]


async def stored_job(p: Plane, name: str = "pi") -> objects_pb2.Job:
    return await p.objects.get(Kind.JOB, "default", name)


async def condition(p: Plane, type_: str) -> bool:
    found = find_condition((await stored_job(p)).status.conditions, type_)
    return found is not None and found.status == "True"


async def delete(p: Plane, pod: objects_pb2.Pod) -> None:
    with contextlib.suppress(NotFound):
        await p.objects.delete(Kind.POD, "default", pod.metadata.name)


async def test_finished_pods_deleted_before_they_were_counted_still_count() -> None:
    objects = ObjectStore(MemoryStore())
    async with plane(objects=objects) as p:
        await create(p, factories.job(completions=4, parallelism=2))
        await eventually(lambda: len(active(p)) == 2, "two pods")
        first = active(p)
        assert all(FINALIZER in pod.metadata.finalizers for pod in first), (
            "the Job's pods carry no tracking finalizer"
        )
    # The controller is down: both pods succeed and are deleted before it sees them finish.
    for pod in first:
        await set_phase(objects, pod, "Succeeded")
        await objects.delete(Kind.POD, "default", pod.metadata.name)
        held = await objects.get(Kind.POD, "default", pod.metadata.name)
        assert held.metadata.HasField("deletion_timestamp"), "the deletion did not mark the pod"
    async with plane(objects=objects) as p:
        await eventually(
            lambda: all(
                p.informers[Kind.POD].get("default", x.metadata.name) is None for x in first
            ),
            "the deleted pods were never let go",
        )
        job = await stored_job(p)
        assert job.status.succeeded == 2, f"deleted finished pods counted {job.status.succeeded}"
        for _ in range(2):
            await eventually(lambda: len(active(p)) > 0, "no pod for the remaining completions")
            pod = active(p)[0]
            await set_phase(p.objects, pod, "Succeeded")
            await delete(p, pod)
            await eventually(
                lambda name=pod.metadata.name: p.informers[Kind.POD].get("default", name) is None,
                "a deleted pod was kept by its finalizer",
            )
        await eventually(lambda: condition(p, "Complete"), "the Job never completed")
        job = await stored_job(p)
        assert (job.status.succeeded, job.status.failed) == (4, 0), (
            f"succeeded {job.status.succeeded}, failed {job.status.failed}: deleted pods "
            "were lost or counted twice"
        )
        uncounted = job.status.uncounted_terminated_pods
        assert not uncounted.succeeded and not uncounted.failed


async def test_kept_pods_lose_the_finalizer_once_counted() -> None:
    async with plane() as p:
        await create(p, factories.job(completions=2, parallelism=2))
        await eventually(lambda: len(active(p)) == 2, "two pods")
        for pod in active(p):
            await set_phase(p.objects, pod, "Succeeded")
        await eventually(lambda: condition(p, "Complete"), "the Job never completed")
        await eventually(
            lambda: all(FINALIZER not in pod.metadata.finalizers for pod in p.pods()),
            "a counted pod kept its finalizer",
        )
        assert len(p.pods()) == 2, "finished pods are kept for their logs"
        for pod in p.pods():
            await delete(p, pod)
        await eventually(lambda: p.pods() == [], "deleting a counted pod did not remove it")
        await settle()
        job = await stored_job(p)
        assert job.status.succeeded == 2, "deleting counted pods changed the count"


async def test_a_running_pod_deleted_counts_as_failed_and_is_replaced() -> None:
    async with plane(graceful=True) as p:
        await create(p, factories.job(completions=1, backoff_limit=3))
        await eventually(lambda: len(active(p)) == 1, "one pod")
        first = active(p)[0]
        first.spec.node_name = "n1"
        await p.objects.update(first)  # bound: its deletion is graceful
        await delete(p, first)
        await eventually(lambda: failed_count(p), "the deleted running pod was not counted")
        await eventually(lambda: len(active(p)) == 1, "the deleted pod was not replaced")
        gone = p.informers[Kind.POD].get("default", first.metadata.name)
        assert gone is not None and FINALIZER not in gone.metadata.finalizers, (
            "the deleted pod kept its finalizer once counted"
        )
        await set_phase(p.objects, active(p)[0], "Succeeded")
        await eventually(lambda: condition(p, "Complete"), "the Job never completed")
        job = await stored_job(p)
        assert (job.status.succeeded, job.status.failed) == (1, 1)


async def failed_count(p: Plane) -> bool:
    return (await stored_job(p)).status.failed == 1


async def test_indexed_completions_survive_their_pods() -> None:
    async with plane() as p:
        await create(p, factories.job(completions=3, parallelism=3, indexed=True))
        await eventually(lambda: len(active(p)) == 3, "three indexed pods")
        for pod in active(p):
            await set_phase(p.objects, pod, "Succeeded")
            await delete(p, pod)
        await eventually(lambda: condition(p, "Complete"), "the Indexed Job never completed")
        job = await stored_job(p)
        assert (job.status.completed_indexes, job.status.succeeded) == ("0-2", 3)


async def test_a_deleted_job_lets_its_pods_go() -> None:
    async with plane() as p:
        await create(p, factories.job(completions=3, parallelism=3))
        await eventually(lambda: len(active(p)) == 3, "three pods")
        await set_phase(p.objects, active(p)[0], "Succeeded")
        for pod in p.pods():
            await delete(p, pod)  # as the garbage collector does once the Job is gone
        await p.objects.delete(Kind.JOB, "default", "pi")
        await eventually(lambda: p.pods() == [], "pods of a deleted Job kept their finalizer")


async def test_an_orphaned_pod_loses_the_finalizer() -> None:
    async with plane() as p:
        pod = factories.pod(name="left", uid="")
        pod.metadata.finalizers.append(FINALIZER)
        await p.objects.create(pod)
        await eventually(
            lambda: (
                (x := p.informers[Kind.POD].get("default", "left")) is not None
                and FINALIZER not in x.metadata.finalizers
            ),
            "a pod no Job controls kept the tracking finalizer",
        )


def finished_pod(uid: str, phase: str) -> objects_pb2.Pod:
    pod = factories.pod(name=f"pi-{uid}", uid=uid)
    pod.metadata.finalizers.append(FINALIZER)
    pod.status.phase = phase
    return pod


def test_each_step_can_be_repeated_after_a_crash() -> None:
    pods = [finished_pod("a", "Succeeded"), finished_pod("b", "Failed")]
    running = finished_pod("c", "Running")
    first = tracking.tally(
        objects_pb2.JobStatus(),
        [*pods, running],
        released=(),
        failing=False,
        completions=3,
        indexed=False,
    )
    uncounted = first.status.uncounted_terminated_pods
    assert (list(uncounted.succeeded), list(uncounted.failed)) == (["a"], ["b"])
    assert (first.succeeded, first.failed) == (1, 1)
    assert [p.metadata.uid for p in first.release] == ["a", "b"], "a running pod was released"
    # A crash after step 1: the same pods again, nothing is added twice.
    again = tracking.tally(
        first.status, pods, released=(), failing=False, completions=3, indexed=False
    )
    assert again.status == first.status
    # Step 2 for "a" only, then a crash: "a" is counted, "b" stays uncounted.
    released_a = [pods[1]]
    later = tracking.tally(
        first.status, released_a, released=(), failing=False, completions=3, indexed=False
    )
    assert (later.status.succeeded, later.status.failed) == (1, 0)
    assert list(later.status.uncounted_terminated_pods.succeeded) == []
    assert list(later.status.uncounted_terminated_pods.failed) == ["b"]
    assert (later.succeeded, later.failed) == (1, 1)
    # A cache that still shows "b" with its finalizer after it was released: not counted twice.
    settled = tracking.tally(
        later.status, released_a, released={"b"}, failing=False, completions=3, indexed=False
    )
    assert (settled.status.succeeded, settled.status.failed) == (1, 1)
    assert settled.release == ()
    # Once the Job failed, what still runs counts as failed.
    failing = tracking.tally(
        settled.status, [running], released=(), failing=True, completions=3, indexed=False
    )
    assert list(failing.status.uncounted_terminated_pods.failed) == ["c"]
    assert failing.failed == 2


async def test_a_pod_with_a_finalizer_is_held_until_it_is_released() -> None:
    objects = ObjectStore(MemoryStore(), graceful_pods=True)
    done = finished_pod("", "Succeeded")
    done.metadata.name = "done"
    running = finished_pod("", "Running")
    running.metadata.name, running.spec.node_name = "running", "n1"
    for pod in (done, running):
        await objects.create(pod)
        await objects.delete(Kind.POD, "default", pod.metadata.name)
    held = await objects.get(Kind.POD, "default", "done")
    assert held.metadata.HasField("deletion_timestamp")
    assert held.metadata.deletion_grace_period_seconds == 0, "a finished pod waits for nothing"
    stopping = await objects.get(Kind.POD, "default", "running")
    assert stopping.metadata.deletion_grace_period_seconds == 30, "not deleted gracefully"
    # Its node reports it stopped (a forced delete): still held by the finalizer.
    await objects.delete(Kind.POD, "default", "running", grace_period_seconds=0)
    stopped = await objects.get(Kind.POD, "default", "running")
    assert stopped.metadata.deletion_grace_period_seconds == 0
    for pod in (held, stopped):
        await deletion.release(objects, pod, FINALIZER)
        with pytest.raises(NotFound):
            await objects.get(Kind.POD, "default", pod.metadata.name)

"""The Job controller over the memory store: completions and parallelism, backoffLimit with
the pod backoff, Indexed Jobs' indexes, deadlines, suspension and ttlSecondsAfterFinished.

A fake node moves pods through their phases (`set_phase`), as an agent's reports would.
"""

from __future__ import annotations

from controlplane.cache.informer import Informer
from controlplane.controllers.job import job_controller
from controlplane.controllers.job.indexes import INDEX_KEY, format_ranges, parse_ranges
from controlplane.controllers.job.progress import backoff_delay
from controlplane.objects import ObjectStore
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import ManualClock, settle
from pilothouse import manifests
from pilothouse.conditions import find_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane, set_phase


def plane(*, clock: ManualClock | None = None, backoff: float = 0.0) -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            job_controller(
                objects,
                jobs=informers[Kind.JOB],
                pods=informers[Kind.POD],
                clock=clock,
                backoff_base=backoff,
            )
        ]

    return Plane((Kind.JOB, Kind.POD), build, clock=clock)


async def create(p: Plane, job: objects_pb2.Job) -> objects_pb2.Job:
    manifests.set_defaults(job)
    assert manifests.validate(job) == []
    return await p.objects.create(job)


def active(p: Plane) -> list[objects_pb2.Pod]:
    return [pod for pod in p.pods() if is_active(pod)]


async def finished(p: Plane, name: str = "pi") -> bool:
    return await job_condition(p, name) is not None


async def job_condition(p: Plane, name: str = "pi") -> objects_pb2.Condition | None:
    job = await p.objects.get(Kind.JOB, "default", name)
    for type_ in ("Complete", "Failed"):
        condition = find_condition(job.status.conditions, type_)
        if condition is not None and condition.status == "True":
            return condition
    return None


async def test_five_completions_two_at_a_time_run_exactly_five_pods() -> None:
    async with plane() as p:
        await create(p, factories.job(completions=5, parallelism=2))
        most = 0
        succeeded = 0
        while succeeded < 5:
            await eventually(lambda: len(active(p)) > 0 or None, "the Job ran no pod")
            await settle()
            running = active(p)
            most = max(most, len(running))
            assert len(running) <= 2, f"more than parallelism 2 pods at once: {len(running)}"
            await set_phase(p.objects, running[0], "Succeeded")
            succeeded += 1
            await eventually(
                lambda n=succeeded: sum(x.status.phase == "Succeeded" for x in p.pods()) == n,
                "the pod's success was not seen",
            )
        await eventually(lambda: finished(p), "the Job never completed")
        condition = await job_condition(p)
        assert condition is not None and condition.type == "Complete"
        job = await p.objects.get(Kind.JOB, "default", "pi")
        assert (job.status.succeeded, job.status.active) == (5, 0)
        assert len(p.pods()) == 5, "exactly five pods, all kept for their logs"
        assert most == 2, "two pods should run at once"
        for pod in p.pods():
            assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "pi"
            assert pod.metadata.name.startswith("pi-")


async def test_a_failing_job_stops_at_its_backoff_limit() -> None:
    clock = ManualClock()
    async with plane(clock=clock, backoff=10.0) as p:
        await create(p, factories.job(backoff_limit=2))
        delays = []
        for failure in range(3):
            await eventually(lambda: len(active(p)) == 1, f"no pod for attempt {failure + 1}")
            await set_phase(p.objects, active(p)[0], "Failed", finished_at=clock.now())
            await eventually(
                lambda n=failure + 1: sum(x.status.phase == "Failed" for x in p.pods()) == n,
                "the failure was not seen",
            )
            if failure < 2:
                await settle()
                assert not active(p), "a new pod started before its backoff"
                delays.append(backoff_delay(failure + 1, base=10.0))
                await clock.advance(delays[-1] + 0.1)
        await eventually(lambda: finished(p), "the Job never failed")
        condition = await job_condition(p)
        assert condition is not None
        assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
        assert condition.message == "Job has reached the specified backoff limit"
        assert delays == [10.0, 20.0], "the pod backoff doubles"
        await clock.advance(1000)
        await settle()
        assert len(p.pods()) == 3 and not active(p), "no pod after backoffLimit"


async def test_indexed_pods_carry_their_index() -> None:
    async with plane() as p:
        await create(p, factories.job(completions=3, parallelism=3, indexed=True))
        await eventually(lambda: len(active(p)) == 3, "three indexed pods")
        seen = {}
        for pod in active(p):
            index = pod.metadata.annotations[INDEX_KEY]
            env = {e.name: e.value for e in pod.spec.containers[0].env}
            assert env["JOB_COMPLETION_INDEX"] == index
            assert pod.metadata.name.startswith(f"pi-{index}-")
            seen[index] = pod
        assert sorted(seen) == ["0", "1", "2"]
        await set_phase(p.objects, seen["1"], "Failed")
        await eventually(
            lambda: [x.metadata.annotations[INDEX_KEY] for x in active(p)].count("1") == 1,
            "index 1 was not run again",
        )
        for pod in active(p):
            await set_phase(p.objects, pod, "Succeeded")
        await eventually(lambda: finished(p), "the Indexed Job never completed")
        job = await p.objects.get(Kind.JOB, "default", "pi")
        assert job.status.completed_indexes == "0-2"


async def test_deadline_fails_the_job_and_stops_its_pods() -> None:
    clock = ManualClock()
    async with plane(clock=clock) as p:
        await create(p, factories.job(deadline=30, parallelism=2, completions=4))
        await eventually(lambda: len(active(p)) == 2, "two pods")
        await clock.advance(31)
        await eventually(lambda: finished(p), "the deadline did not fail the Job")
        condition = await job_condition(p)
        assert condition is not None and condition.reason == "DeadlineExceeded"
        await eventually(lambda: not active(p), "its pods kept running")


async def test_a_finished_job_goes_after_its_ttl() -> None:
    clock = ManualClock()
    async with plane(clock=clock) as p:
        await create(p, factories.job(ttl=60))
        await eventually(lambda: len(active(p)) == 1, "one pod")
        await set_phase(p.objects, active(p)[0], "Succeeded")
        await eventually(lambda: finished(p), "never completed")
        await clock.advance(59)
        await settle()
        assert p.informers[Kind.JOB].get("default", "pi") is not None, "deleted too early"
        await clock.advance(2)
        await eventually(
            lambda: p.informers[Kind.JOB].get("default", "pi") is None, "not deleted after ttl"
        )


async def test_suspended_job_runs_nothing_until_resumed() -> None:
    async with plane() as p:
        job = factories.job(parallelism=2, completions=2)
        job.spec.suspend = True
        await create(p, job)
        await settle()
        assert not p.pods()
        current = await p.objects.get(Kind.JOB, "default", "pi")
        current.spec.suspend = False
        await p.objects.update(current)
        await eventually(lambda: len(active(p)) == 2, "resumed Job ran no pods")


def test_completed_indexes_round_trip() -> None:
    assert format_ranges({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert parse_ranges("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert format_ranges([]) == ""

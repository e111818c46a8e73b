"""The CronJob controller on a fake clock: Jobs on schedule, Forbid and Replace, missed runs
after an outage (only the most recent one, within startingDeadlineSeconds), suspend, history
limits, time zones and the @hourly descriptor."""

from __future__ import annotations

from controlplane.cache.informer import Informer
from controlplane.controllers.cronjob import CronJobReconciler
from controlplane.controllers.cronjob.jobs import SCHEDULED_AT
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane

START = 1_700_000_000.0  # 22:13:20 UTC: 40 s before a whole minute


def plane(clock: ManualClock, objects: ObjectStore | None = None) -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            CronJobReconciler(
                objects=objects,
                cronjobs=informers[Kind.CRONJOB],
                jobs=informers[Kind.JOB],
                clock=clock,
            ).controller()
        ]

    objects = objects or ObjectStore(MemoryStore(), clock=clock.now)
    return Plane((Kind.CRONJOB, Kind.JOB), build, clock=clock, objects=objects)


async def create(p: Plane, cronjob: objects_pb2.CronJob) -> None:
    manifests.set_defaults(cronjob)
    assert manifests.validate(cronjob) == []
    await p.objects.create(cronjob)


def jobs(p: Plane) -> list[objects_pb2.Job]:
    return sorted(p.informers[Kind.JOB].list("default"), key=lambda j: j.metadata.name)


async def finish(p: Plane, job: objects_pb2.Job, condition: str = "Complete") -> None:
    current = await p.objects.get(Kind.JOB, "default", job.metadata.name)
    current.status.conditions.add(type=condition, status="True")
    current.status.completion_time.FromSeconds(int(p.objects._clock()))
    await p.objects.update_status(current)


async def test_every_minute_makes_one_job_per_minute() -> None:
    clock = ManualClock(START)
    async with plane(clock) as p:
        await create(p, factories.cron_job())
        await settle()
        assert jobs(p) == [], "nothing is due before the first whole minute"
        await clock.advance(40.5)
        await eventually(lambda: len(jobs(p)) == 1, "no Job at the first minute")
        first = jobs(p)[0]
        minute = int((START + 40) // 60)
        assert first.metadata.name == f"tick-{minute}"
        assert first.metadata.annotations[SCHEDULED_AT] == "2023-11-14T22:14:00Z"
        await clock.advance(60)
        await eventually(lambda: len(jobs(p)) == 2, "no Job at the second minute (Allow)")
        cronjob = await p.objects.get(Kind.CRONJOB, "default", "tick")
        assert [ref.name for ref in cronjob.status.active] == [j.metadata.name for j in jobs(p)]
        assert cronjob.status.last_schedule_time.seconds == (minute + 1) * 60


async def test_forbid_skips_while_the_previous_job_runs() -> None:
    clock = ManualClock(START)
    async with plane(clock) as p:
        await create(p, factories.cron_job(concurrency="Forbid"))
        await clock.advance(40.5)
        await eventually(lambda: len(jobs(p)) == 1, "no first Job")
        await clock.advance(60)
        await settle()
        await clock.advance(60)
        await settle()
        assert len(jobs(p)) == 1, "Forbid started a Job while the previous one ran"
        await finish(p, jobs(p)[0])
        await clock.advance(60)
        await eventually(lambda: len(jobs(p)) == 2, "no Job once the previous one finished")


async def test_replace_deletes_the_running_job() -> None:
    clock = ManualClock(START)
    async with plane(clock) as p:
        await create(p, factories.cron_job(concurrency="Replace"))
        await clock.advance(40.5)
        await eventually(lambda: len(jobs(p)) == 1, "no first Job")
        first = jobs(p)[0].metadata.name
        await clock.advance(60)
        await eventually(
            lambda: [j.metadata.name for j in jobs(p)] not in ([first], []),
            "the running Job was not replaced",
        )
        assert first not in [j.metadata.name for j in jobs(p)]


async def test_after_an_outage_only_the_most_recent_missed_run_starts() -> None:
    clock = ManualClock(START)
    objects = ObjectStore(MemoryStore(), clock=clock.now)
    async with plane(clock, objects) as p:
        await create(p, factories.cron_job(deadline=200))
        await clock.advance(40.5)
        await eventually(lambda: len(jobs(p)) == 1, "no first Job")
    await clock.advance(600)  # the control plane was down for ten minutes
    async with plane(clock, objects) as p:
        await eventually(lambda: len(jobs(p)) == 2, "the missed run did not start")
        await settle()
        assert len(jobs(p)) == 2, "one Job per missed minute was started"
        latest = int((START + 40.5 + 600) // 60)
        assert jobs(p)[-1].metadata.name == f"tick-{latest}"


async def test_a_missed_run_past_its_starting_deadline_is_skipped() -> None:
    clock = ManualClock(START)
    objects = ObjectStore(MemoryStore(), clock=clock.now)
    async with plane(clock, objects) as p:
        await create(p, factories.cron_job(schedule="0 * * * *", deadline=30))
    await clock.advance(40 + 46 * 60 + 50)  # 23:00:50: the 23:00 run is 50 s late
    async with plane(clock, objects) as p:
        await settle()
        assert jobs(p) == [], "a run 50 s late started despite startingDeadlineSeconds 30"


async def test_suspended_cronjob_starts_nothing() -> None:
    clock = ManualClock(START)
    async with plane(clock) as p:
        await create(p, factories.cron_job(suspend=True))
        await clock.advance(180)
        await settle()
        assert jobs(p) == []


async def test_history_keeps_three_successful_and_one_failed_job() -> None:
    clock = ManualClock(START)
    async with plane(clock) as p:
        await create(p, factories.cron_job())
        await clock.advance(40.5)
        for minute in range(6):
            await eventually(lambda n=minute: len(jobs(p)) >= 1, "no Job")
            newest = jobs(p)[-1]
            await finish(p, newest, "Failed" if minute in (0, 1) else "Complete")
            await clock.advance(60)
            await settle()
        await eventually(
            lambda: sum(1 for j in jobs(p) if j.status.conditions) == 4,
            "history not trimmed to 3 successful + 1 failed",
        )


async def test_time_zone_moves_the_schedule() -> None:
    clock = ManualClock(START)  # 22:13:20 UTC = 17:13:20 in New York
    async with plane(clock) as p:
        await create(p, factories.cron_job(schedule="14 17 * * *", time_zone="America/New_York"))
        await clock.advance(40.5)
        await eventually(lambda: len(jobs(p)) == 1, "17:14 New York time is 22:14 UTC")


async def test_hourly_makes_a_job_at_the_top_of_each_hour() -> None:
    clock = ManualClock(START)  # 22:13:20 UTC
    async with plane(clock) as p:
        await create(p, factories.cron_job(schedule="@hourly"))
        await clock.advance(40 + 46 * 60 - 1)  # 22:59:59
        await settle()
        assert jobs(p) == [], "@hourly ran before the hour"
        await clock.advance(1.5)
        await eventually(lambda: len(jobs(p)) == 1, "no Job at 23:00")
        assert jobs(p)[0].metadata.annotations[SCHEDULED_AT] == "2023-11-14T23:00:00Z"
        await clock.advance(3600)
        await eventually(lambda: len(jobs(p)) == 2, "no Job at midnight")
        assert jobs(p)[1].metadata.annotations[SCHEDULED_AT] == "2023-11-15T00:00:00Z"

"""The reconciler of CronJobs: Jobs started on schedule, as Kubernetes' cronjob controller v2.

One pass over one CronJob (key "namespace/name"), at time now:
1. its Jobs (controlled by it): the active ones are listed in `status.active`, the newest
   successful one's completion is `status.lastSuccessfulTime`, and finished ones beyond the
   history limits are deleted (their pods with them);
2. unless it is suspended or Terminating, the most recent scheduled time t in
   (lastScheduleTime or creation, now] is found, not earlier than now - startingDeadlineSeconds
   when that is set; after an outage only that one missed run is started (with a
   `TooManyMissedTimes` warning beyond 100 missed), never one per missed time;
3. concurrencyPolicy: Allow starts it; Forbid skips it while a Job is active (the run stays
   due: it starts once the active Job finishes, if still within the starting deadline);
   Replace deletes the active Jobs first;
4. the Job for t is created (named by t, see `jobs`), lastScheduleTime = t, and the CronJob is
   looked at again at its next scheduled time.

Invariants: level-triggered and idempotent: a retry after a crash re-creates nothing (the
name of a run's Job is fixed) and never runs a scheduled time twice.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog

from controlplane.cache.informer import Informer
from controlplane.controllers.cronjob import jobs as cronjobs
from controlplane.controllers.reconciling import Reconciling
from controlplane.events import EventType
from controlplane.objects import owners
from controlplane.reconcile import Result
from controlplane.store import AlreadyExists, NotFound
from pilothouse import cron
from pilothouse.conditions import seconds
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

TOO_MANY_MISSED = 100
NEXT_DELTA = 0.1  # s after a scheduled time: look just after it, never just before


@dataclass(kw_only=True, eq=False)
class CronJobReconciler(Reconciling):
    cronjobs: Informer
    jobs: Informer

    NAME = "controller.cronjob"
    OWNER = objects_pb2.CronJob

    def caches(self) -> tuple[Informer, ...]:
        return (self.cronjobs, self.jobs)

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        cronjob = self.cronjobs.get(namespace, name)
        if cronjob is None:
            return Result()
        now = self.clock.now()
        owned = [
            j for j in self.jobs.owned_by(cronjob.metadata.uid) if j.metadata.namespace == namespace
        ]
        status = objects_pb2.CronJobStatus()
        status.CopyFrom(cronjob.status)
        active = [j for j in owned if cronjobs.outcome(j) is None]
        await self._clean_history(cronjob, owned)
        self._record_success(status, owned)
        result = Result()
        spec = cronjob.spec
        try:
            schedule = cron.Schedule.parse(spec.schedule, spec.time_zone)
        except cron.ScheduleError as error:
            await self._warn(cronjob, "InvalidSchedule", f"invalid schedule: {error}")
            schedule = None
        if schedule is not None and not (
            spec.suspend or cronjob.metadata.HasField("deletion_timestamp")
        ):
            started = await self._run_due(cronjob, schedule, status, active, now=now)
            if started is not None:
                active.append(started)
            result = Result(requeue_after=schedule.next_after(now) - now + NEXT_DELTA)
        del status.active[:]
        status.active.extend(
            cronjobs.reference(j) for j in sorted(active, key=lambda j: j.metadata.name)
        )
        await self.write_status(cronjob, status)
        return result

    async def _run_due(
        self,
        cronjob: objects_pb2.CronJob,
        schedule: cron.Schedule,
        status: objects_pb2.CronJobStatus,
        active: list[objects_pb2.Job],
        *,
        now: float,
    ) -> objects_pb2.Job | None:
        """Start the most recent due run, as the module's steps 2 to 4 say."""
        spec = cronjob.spec
        if status.HasField("last_schedule_time"):
            earliest = seconds(status.last_schedule_time)
        else:
            earliest = seconds(cronjob.metadata.creation_timestamp)
        if spec.HasField("starting_deadline_seconds"):
            earliest = max(earliest, now - spec.starting_deadline_seconds)
        scheduled, missed = schedule.most_recent(earliest, now)
        if scheduled is None:
            return None
        if missed > TOO_MANY_MISSED:
            await self._warn(
                cronjob,
                "TooManyMissedTimes",
                "too many missed start times (> 100): set or decrease .spec."
                "startingDeadlineSeconds or check clock skew",
            )
        wanted = cronjobs.job_name(cronjob, scheduled)
        if any(j.metadata.name == wanted for j in active):
            status.last_schedule_time.FromNanoseconds(int(scheduled * 1e9))
            return None  # made by an earlier pass
        policy = spec.concurrency_policy or "Allow"
        if active and policy == "Forbid":
            log.info(
                "cronjob.skipped",
                cronjob=f"{cronjob.metadata.namespace}/{cronjob.metadata.name}",
                reason="a Job is still active and concurrencyPolicy is Forbid",
            )
            return None
        if active and policy == "Replace":
            for job in list(active):
                with contextlib.suppress(NotFound):
                    await self.objects.delete(Kind.JOB, job.metadata.namespace, job.metadata.name)
                active.remove(job)
                await self._event(
                    cronjob,
                    EventType.NORMAL,
                    "SuccessfulDelete",
                    f"Deleted job {job.metadata.name}",
                )
        job = cronjobs.new_job(cronjob, scheduled)
        try:
            created = await self.objects.create(job)
            await self._event(
                cronjob, EventType.NORMAL, "SuccessfulCreate", f"Created job {job.metadata.name}"
            )
            log.info("cronjob.job_created", job=f"{job.metadata.namespace}/{job.metadata.name}")
        except AlreadyExists:
            try:
                created = await self.objects.get(
                    Kind.JOB, job.metadata.namespace, job.metadata.name
                )
            except NotFound:
                return None
            if not owners.owned_by(created, cronjob.metadata.uid):
                return None
        status.last_schedule_time.FromNanoseconds(int(scheduled * 1e9))
        return created if cronjobs.outcome(created) is None else None

    async def _clean_history(
        self, cronjob: objects_pb2.CronJob, owned: list[objects_pb2.Job]
    ) -> None:
        spec = cronjob.spec
        doomed = cronjobs.surplus(
            owned,
            successful_limit=spec.successful_jobs_history_limit
            if spec.HasField("successful_jobs_history_limit")
            else 3,
            failed_limit=spec.failed_jobs_history_limit
            if spec.HasField("failed_jobs_history_limit")
            else 1,
        )
        for job in doomed:
            with contextlib.suppress(NotFound):
                await self.objects.delete(
                    Kind.JOB,
                    job.metadata.namespace,
                    job.metadata.name,
                    resource_version=job.metadata.resource_version,
                )
                await self._event(
                    cronjob, EventType.NORMAL, "SawCompletedJob", f"Deleted job {job.metadata.name}"
                )
        for job in doomed:
            owned.remove(job)

    @staticmethod
    def _record_success(status: objects_pb2.CronJobStatus, owned: list[objects_pb2.Job]) -> None:
        times = [
            seconds(j.status.completion_time)
            for j in owned
            if cronjobs.outcome(j) == "Complete" and j.status.HasField("completion_time")
        ]
        if times:
            newest = max(times)
            if (
                not status.HasField("last_successful_time")
                or seconds(status.last_successful_time) < newest
            ):
                status.last_successful_time.FromNanoseconds(int(newest * 1e9))

    async def _warn(self, cronjob: objects_pb2.CronJob, reason: str, message: str) -> None:
        log.warning(
            "cronjob.warning",
            cronjob=f"{cronjob.metadata.namespace}/{cronjob.metadata.name}",
            reason=reason,
            message=message,
        )
        await self._event(cronjob, EventType.WARNING, reason, message)

    async def _event(
        self, cronjob: objects_pb2.CronJob, type_: EventType, reason: str, message: str
    ) -> None:
        if self.events is not None:
            await self.events.record(cronjob, type_, reason, message)

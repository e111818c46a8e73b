"""The Job controller: each Job runs pods until enough succeed, too many fail, or time is up.

One pass over one Job (key "namespace/name"):
1. its pods: those it controls (owner uid); with `manualSelector`, also orphans its selector
   adopts (`objects.adoption`);
2. a finished Job (condition Complete or Failed) only stops what still runs, and is deleted
   once `ttlSecondsAfterFinished` has passed since it finished (its pods go with it);
3. a suspended Job stops its active pods (condition Suspended);
4. otherwise `progress.plan` decides: finish (Complete; Failed with BackoffLimitExceeded or
   DeadlineExceeded), create pods (generateName `<job>-`, or `<job>-<index>-` for Indexed
   Jobs, with JOB_COMPLETION_INDEX in each container's environment), or stop surplus ones;
5. status: startTime (first pods), active, ready, succeeded, failed, completedIndexes,
   completionTime and the conditions, written when they changed.

Invariants: pods made here are under expectations (nothing is created twice on a cache a step
behind); pods are never created for a Job that is finished, suspended or Terminating; finished
pods are kept (their logs stay readable) until the Job itself goes.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.job import progress
from controlplane.controllers.job.indexes import INDEX_KEY, format_ranges
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore, adoption, owners
from controlplane.objects.podtemplate import (
    Expectations,
    Tombstones,
    create_generated,
    pod_from_template,
)
from controlplane.reconcile import Result
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.controller import Controller
from controlplane.store import NotFound
from pilothouse import selectors
from pilothouse.conditions import find_condition, seconds, set_condition
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

EXPECTED = 1.0
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_UID, LEGACY_NAME = "controller-uid", "job-name"
INDEX_ENV = "JOB_COMPLETION_INDEX"


def finished(job: objects_pb2.Job) -> objects_pb2.Condition | None:
    """The Job's Complete or Failed condition when it is True."""
    for type_ in ("Complete", "Failed"):
        condition = find_condition(job.status.conditions, type_)
        if condition is not None and condition.status == "True":
            return condition
    return None


class JobReconciler:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        jobs: Informer,
        pods: Informer,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        backoff_base: float = progress.BACKOFF_BASE,
    ) -> None:
        self._objects = objects
        self._jobs = jobs
        self._pods = pods
        self._events = events
        self._clock = clock or SystemClock()
        self._backoff_base = backoff_base
        self._expectations = Expectations()
        self._tombstones = Tombstones()

    def key_for(self, notice: Notice) -> str | None:
        obj = notice.object
        if isinstance(obj, objects_pb2.Job):
            return f"{obj.metadata.namespace}/{obj.metadata.name}"
        ref = owners.controller_of(obj)
        if ref is not None and ref.kind == "Job":
            return f"{obj.metadata.namespace}/{ref.name}"
        return None

    # ------------------------------------------------------------------ one pass

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        job = self._jobs.get(namespace, name)
        if job is None:
            return Result()
        now = self._clock.now()
        pods = await self._pods_of(job)
        spec = job.spec
        observed = progress.observe(pods, restart_policy=spec.template.spec.restart_policy)
        status = objects_pb2.JobStatus()
        status.CopyFrom(job.status)
        result = Result()
        done = finished(job)
        if job.metadata.HasField("deletion_timestamp"):
            pass
        elif done is not None:
            await self._stop(list(observed.active))
            result = await self._expire(job, done, now=now)
        elif spec.suspend:
            await self._stop(list(observed.active))
            self._condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now)
        elif not self._expectations.satisfied(job.metadata.uid, seen=self._pods.revision):
            result = Result(requeue_after=EXPECTED)
        else:
            self._condition(status, "Suspended", "False", "JobResumed", "Job resumed", now)
            if not status.HasField("start_time"):
                status.start_time.FromNanoseconds(int(now * 1e9))
            step = progress.plan(
                spec,
                observed,
                started=seconds(status.start_time),
                now=now,
                backoff_base=self._backoff_base,
            )
            await self._stop(list(step.delete))
            await self._create(job, count=step.create, indexes=step.indexes)
            if step.outcome is not None:
                await self._finish(job, status, step.outcome, now=now)
                if spec.HasField("ttl_seconds_after_finished"):
                    result = Result(requeue_after=max(spec.ttl_seconds_after_finished, 0.0))
            elif step.wait is not None:
                result = Result(requeue_after=step.wait)
            if step.create or step.indexes:
                result = Result(requeue_after=min(result.requeue_after or EXPECTED, EXPECTED))
        self._counts(status, job, observed)
        await self._write_status(job, status)
        return result

    async def _pods_of(self, job: objects_pb2.Job) -> list[objects_pb2.Pod]:
        self._tombstones.prune(self._pods.get)
        namespace = job.metadata.namespace
        candidates = self._tombstones.alive(self._pods.list(namespace))
        if job.spec.manual_selector and job.spec.selector.match_labels:
            wanted = selectors.from_match_labels(job.spec.selector.match_labels)
            return await adoption.claim(self._objects, job, candidates, matches=wanted.matches)
        return [p for p in candidates if owners.owned_by(p, job.metadata.uid)]

    # ------------------------------------------------------------------- actions

    async def _create(self, job: objects_pb2.Job, *, count: int, indexes: tuple[int, ...]) -> None:
        if not count and not indexes:
            return
        labels = {
            CONTROLLER_UID: job.metadata.uid,
            JOB_NAME: job.metadata.name,
            LEGACY_UID: job.metadata.uid,
            LEGACY_NAME: job.metadata.name,
        }

        async def one(index: int | None) -> None:
            extra = dict(labels)
            annotations: dict[str, str] = {}
            generate = f"{job.metadata.name}-"
            if index is not None:
                extra[INDEX_KEY] = annotations[INDEX_KEY] = str(index)
                generate = f"{job.metadata.name}-{index}-"
            pod = pod_from_template(
                job.spec.template,
                owner=job,
                generate_name=generate,
                labels=extra,
                annotations=annotations,
            )
            if index is not None:
                pod.spec.hostname = pod.spec.hostname or f"{job.metadata.name}-{index}"
                for container in pod.spec.containers:
                    container.env.add(name=INDEX_ENV, value=str(index))
            await create_generated(self._objects, pod, expectations=self._expectations)

        targets: list[int | None] = list(indexes) if indexes else [None] * count
        await asyncio.gather(*(one(i) for i in targets))
        log.info(
            "job.pods_created",
            job=f"{job.metadata.namespace}/{job.metadata.name}",
            count=len(targets),
        )
        if self._events is not None:
            await self._events.record(
                job, EventType.NORMAL, "SuccessfulCreate", f"Created {len(targets)} pod(s)"
            )

    async def _stop(self, pods: list[objects_pb2.Pod]) -> None:
        async def one(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self._objects.delete(Kind.POD, pod.metadata.namespace, pod.metadata.name)
            self._tombstones.bury(pod)

        await asyncio.gather(*(one(p) for p in pods))

    async def _finish(
        self,
        job: objects_pb2.Job,
        status: objects_pb2.JobStatus,
        outcome: progress.Outcome,
        *,
        now: float,
    ) -> None:
        if outcome is progress.Outcome.COMPLETE:
            self._condition(status, "Complete", "True", "", "", now)
            status.completion_time.FromNanoseconds(int(now * 1e9))
            reason, message, kind = "Completed", "Job completed", EventType.NORMAL
        else:
            message = progress.MESSAGES[outcome]
            self._condition(status, "Failed", "True", outcome.value, message, now)
            reason, kind = outcome.value, EventType.WARNING
        log.info(
            "job.finished",
            job=f"{job.metadata.namespace}/{job.metadata.name}",
            outcome=outcome.value,
        )
        if self._events is not None:
            await self._events.record(job, kind, reason, message)

    async def _expire(
        self, job: objects_pb2.Job, done: objects_pb2.Condition, *, now: float
    ) -> Result:
        """Delete a finished Job whose ttlSecondsAfterFinished has passed (its pods follow)."""
        if not job.spec.HasField("ttl_seconds_after_finished"):
            return Result()
        at = job.status.completion_time if done.type == "Complete" else done.last_transition_time
        due = seconds(at) + job.spec.ttl_seconds_after_finished
        if due > now:
            return Result(requeue_after=due - now)
        with contextlib.suppress(NotFound):
            await self._objects.delete(
                Kind.JOB,
                job.metadata.namespace,
                job.metadata.name,
                resource_version=job.metadata.resource_version,
            )
            log.info("job.expired", job=f"{job.metadata.namespace}/{job.metadata.name}")
        return Result()

    # -------------------------------------------------------------------- status

    @staticmethod
    def _condition(
        status: objects_pb2.JobStatus, type_: str, value: str, reason: str, message: str, now: float
    ) -> None:
        if value == "False" and find_condition(status.conditions, type_) is None:
            return  # never suspended: no condition to clear
        wanted = objects_pb2.Condition(type=type_, status=value, reason=reason, message=message)
        conditions = set_condition(status.conditions, wanted, now=now, update_time=False)
        for condition in conditions:
            condition.last_probe_time.CopyFrom(condition.last_transition_time)
        del status.conditions[:]
        status.conditions.extend(conditions)

    @staticmethod
    def _counts(
        status: objects_pb2.JobStatus, job: objects_pb2.Job, observed: progress.Observed
    ) -> None:
        status.active = 0 if finished(job) is not None else len(observed.active)
        status.ready = observed.ready
        status.succeeded = max(status.succeeded, len(observed.succeeded))
        status.failed = max(status.failed, len(observed.failed))
        if job.spec.completion_mode == "Indexed":
            status.completed_indexes = format_ranges(observed.succeeded_indexes())

    async def _write_status(self, job: objects_pb2.Job, status: objects_pb2.JobStatus) -> None:
        if status == job.status:
            return
        updated = objects_pb2.Job()
        updated.CopyFrom(job)
        updated.status.CopyFrom(status)
        with contextlib.suppress(NotFound):
            await self._objects.update_status(updated)


def job_controller(
    objects: ObjectStore,
    *,
    jobs: Informer,
    pods: Informer,
    events: EventRecorder | None = None,
    clock: Clock | None = None,
    workers: int = 2,
    backoff_base: float = progress.BACKOFF_BASE,
) -> Controller:
    """The Job controller, subscribed to its informers (which must also run)."""
    reconciler = JobReconciler(
        objects, jobs=jobs, pods=pods, events=events, clock=clock, backoff_base=backoff_base
    )
    controller = Controller(
        "controller.job", reconciler, workers=workers, clock=clock, wait_for=(jobs, pods)
    )

    def enqueue(notice: Notice) -> None:
        key = reconciler.key_for(notice)
        if key is not None:
            controller.enqueue(key)

    jobs.add_handler(enqueue)
    pods.add_handler(enqueue)
    return controller

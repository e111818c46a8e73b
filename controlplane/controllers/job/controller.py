"""The Job controller: each Job runs pods until enough succeed, too many fail, or time is up.

One pass over one Job (key "namespace/name"):
1. its pods: those it controls (owner uid); with `manualSelector`, also orphans its selector
   adopts (`objects.adoption`); pods of a Job of that name that is gone or was replaced only
   lose their tracking finalizer (`finalizers.strays`);
2. its counts (`tracking`): every pod it makes or adopts carries the job-tracking finalizer;
   a finished pod is recorded in status.uncountedTerminatedPods (Indexed: completedIndexes),
   then its finalizer is released, then it moves to succeeded or failed, so a finished pod
   deleted by anyone, at any moment, is counted exactly once;
3. a finished (condition Complete or Failed) or Terminating Job only stops what still runs and
   releases every finalizer, and is deleted once `ttlSecondsAfterFinished` has passed since it
   finished (its pods go with it);
4. a suspended Job stops its active pods (condition Suspended);
5. otherwise `progress.plan` decides, from those counts: finish (Complete; Failed with
   BackoffLimitExceeded or DeadlineExceeded), create pods (generateName `<job>-`, or
   `<job>-<index>-` for Indexed Jobs, with JOB_COMPLETION_INDEX in each container's
   environment), or stop surplus ones. Pods stopped because the Job failed count as failed
   (Kubernetes' rule); pods stopped as surplus, at completion or for a suspension lose their
   finalizer first and count as nothing;
6. status: startTime (first pods), active, ready, the counts, completionTime and the
   conditions, written when they changed; Complete or Failed only once nothing is uncounted.

Keys "pod:<namespace>/<name>": a pod that carries the finalizer with no Job controlling it
loses the finalizer.

Invariants: pods made here are under expectations (nothing is created twice on a cache a step
behind); a status older than the one this process wrote is never acted on (the Job cache is a
step behind: the next notice brings the new one); pods are never created for a Job that is
finished, suspended or Terminating; finished pods are kept (their logs stay readable) until
the Job itself goes.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.job import finalizers, progress, tracking
from controlplane.controllers.job import status as jobstatus
from controlplane.controllers.job.indexes import INDEX_KEY, parse_ranges
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ChangeType, ObjectStore, adoption, owners
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
from pilothouse.conditions import seconds
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

EXPECTED = 1.0
ORPHAN_KEY = "pod:"
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_UID, LEGACY_NAME = "controller-uid", "job-name"
INDEX_ENV = "JOB_COMPLETION_INDEX"


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
        self._releases = finalizers.Releases(objects)
        # "namespace/name" -> (the Job's uid, the revision of our last write of its status)
        self._written: dict[str, tuple[str, int]] = {}

    def key_for(self, notice: Notice) -> str | None:
        obj = notice.object
        key = owners.key_of(obj, owner=objects_pb2.Job)
        if key is not None:
            return key
        if finalizers.orphaned(obj) and notice.type is not ChangeType.DELETED:
            return f"{ORPHAN_KEY}{obj.metadata.namespace}/{obj.metadata.name}"
        return None

    # ------------------------------------------------------------------ one pass

    async def reconcile(self, key: str) -> Result:
        if key.startswith(ORPHAN_KEY):
            namespace, name = key.removeprefix(ORPHAN_KEY).split("/", 1)
            pod = self._pods.get(namespace, name)
            if pod is not None and finalizers.orphaned(pod):
                await self._releases.release("", [pod])
            return Result()
        namespace, name = key.split("/", 1)
        job = self._jobs.get(namespace, name)
        uid = job.metadata.uid if job is not None else None
        stray = finalizers.strays(self._pods.list(namespace), job_name=name, job_uid=uid)
        await self._releases.release("", stray)
        if job is None:
            gone = self._written.pop(key, None)
            if gone is not None:
                self._releases.forget(gone[0])
            return Result()
        written_uid, written = self._written.get(key, ("", 0))
        if written_uid == job.metadata.uid and _revision(job) < written:
            return Result(requeue_after=EXPECTED)  # our newer status is on its way
        now = self._clock.now()
        pods = await self._pods_of(job)  # adopts first: an adopted pod is counted too
        everyone = [
            p for p in self._pods.owned_by(job.metadata.uid) if p.metadata.namespace == namespace
        ]
        spec = job.spec
        counts = self._tally(job, everyone, failing=False)
        observed = self._observe(job, pods, counts)
        status = objects_pb2.JobStatus()
        status.CopyFrom(job.status)
        result = Result()
        outcome: progress.Outcome | None = None
        done = jobstatus.finished(job)
        if job.metadata.HasField("deletion_timestamp") or done is not None:
            if done is not None:
                await self._stop(list(observed.active), counted=False)
                result = await self._expire(job, done, now=now)
            # Nothing more is counted: every pod is let go.
            await self._releases.release(job.metadata.uid, _tracked(everyone))
            counts = tracking.Tally(status=job.status, release=(), succeeded=0, failed=0)
        elif spec.suspend:
            await self._stop(list(observed.active), counted=False)
            jobstatus.put_condition(
                status, "Suspended", "True", "JobSuspended", "Job suspended", now
            )
        elif not self._expectations.satisfied(job.metadata.uid, seen=self._pods.revision):
            result = Result(requeue_after=EXPECTED)
        else:
            jobstatus.put_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now)
            if not status.HasField("start_time"):
                status.start_time.FromNanoseconds(int(now * 1e9))
            step = progress.plan(
                spec,
                observed,
                started=seconds(status.start_time),
                now=now,
                backoff_base=self._backoff_base,
            )
            outcome = step.outcome
            failing = outcome not in (None, progress.Outcome.COMPLETE)
            await self._stop(list(step.delete), counted=failing)
            await self._create(job, count=step.create, indexes=step.indexes)
            if failing:  # what still ran counts as failed
                counts = self._tally(job, everyone, failing=True)
            if step.wait is not None and outcome is None:
                result = Result(requeue_after=step.wait)
            if step.create or step.indexes:
                result = Result(requeue_after=min(result.requeue_after or EXPECTED, EXPECTED))
        jobstatus.copy_counts(status, job, observed, counts.status)
        job = await self._write_status(job, status)
        await self._releases.release(job.metadata.uid, counts.release)
        pending = self._releases.pending(job.metadata.uid, everyone)  # now with those
        still = {p.metadata.uid for p in everyone if tracking.tracked(p, released=pending)}
        tracking.settle(status, still_tracked=still)
        uncounted = status.uncounted_terminated_pods
        if outcome is not None and not (uncounted.succeeded or uncounted.failed):
            await self._finish(job, status, outcome, now=now)
            if spec.HasField("ttl_seconds_after_finished"):
                result = Result(requeue_after=max(spec.ttl_seconds_after_finished, 0.0))
        elif outcome is not None:
            result = Result(requeue_after=EXPECTED)  # finished once every pod is counted
        await self._write_status(job, status)
        return result

    def _tally(
        self, job: objects_pb2.Job, pods: list[objects_pb2.Pod], *, failing: bool
    ) -> tracking.Tally:
        spec = job.spec
        return tracking.tally(
            job.status,
            pods,
            released=self._releases.pending(job.metadata.uid, pods),
            failing=failing,
            completions=spec.completions if spec.HasField("completions") else None,
            indexed=spec.completion_mode == "Indexed",
        )

    @staticmethod
    def _observe(
        job: objects_pb2.Job, pods: list[objects_pb2.Pod], counts: tracking.Tally
    ) -> progress.Observed:
        indexed = job.spec.completion_mode == "Indexed"
        return progress.observe(
            pods,
            restart_policy=job.spec.template.spec.restart_policy,
            succeeded=counts.succeeded,
            failed=counts.failed,
            done_indexes=frozenset(parse_ranges(counts.status.completed_indexes))
            if indexed
            else frozenset(),
        )

    async def _pods_of(self, job: objects_pb2.Job) -> list[objects_pb2.Pod]:
        self._tombstones.prune(self._pods.get)
        namespace = job.metadata.namespace
        candidates = self._tombstones.alive(self._pods.list(namespace))
        if job.spec.manual_selector and job.spec.selector.match_labels:
            wanted = selectors.from_match_labels(job.spec.selector.match_labels)
            return await adoption.claim(
                self._objects,
                job,
                candidates,
                matches=wanted.matches,
                finalizers=(tracking.FINALIZER,),
            )
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
            pod.metadata.finalizers.append(tracking.FINALIZER)
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

    async def _stop(self, pods: list[objects_pb2.Pod], *, counted: bool) -> None:
        """Delete `pods`; unless `counted` (the Job failed: they count as failed), their
        finalizer is released first, so they count as nothing."""
        if not counted:
            owner = {ref.uid for p in pods if (ref := owners.controller_of(p)) is not None}
            for uid in owner:
                mine = [p for p in pods if owners.owned_by(p, uid)]
                await self._releases.release(uid, _tracked(mine))

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
            jobstatus.put_condition(status, "Complete", "True", "", "", now)
            status.completion_time.FromNanoseconds(int(now * 1e9))
            reason, message, kind = "Completed", "Job completed", EventType.NORMAL
        else:
            message = progress.MESSAGES[outcome]
            jobstatus.put_condition(status, "Failed", "True", outcome.value, message, now)
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

    async def _write_status(
        self, job: objects_pb2.Job, status: objects_pb2.JobStatus
    ) -> objects_pb2.Job:
        """Write `status` if it changed; the Job as stored now (as it was if not written)."""
        if status == job.status:
            return job
        updated = objects_pb2.Job()
        updated.CopyFrom(job)
        updated.status.CopyFrom(status)
        try:
            written = await self._objects.update_status(updated)
        except NotFound:
            return job
        key = f"{job.metadata.namespace}/{job.metadata.name}"
        self._written[key] = (job.metadata.uid, _revision(written))
        return written


def _tracked(pods: list[objects_pb2.Pod]) -> list[objects_pb2.Pod]:
    return [p for p in pods if tracking.FINALIZER in p.metadata.finalizers]


def _revision(job: objects_pb2.Job) -> int:
    try:
        return int(job.metadata.resource_version or 0)
    except ValueError:
        return 0


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

    controller.follow((jobs, pods), reconciler.key_for)
    return controller

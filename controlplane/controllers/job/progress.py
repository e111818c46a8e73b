"""What a Job's pods amount to, and what the Job controller does next (pure).

Vocabulary:
- active: the Job's pods neither finished (Succeeded/Failed) nor being deleted;
- succeeded, failed: the Job's counts (`tracking`: what its status counted, and what it is
  counting), whether the pods are still there or not;
- failures: the failed count, plus, with restartPolicy OnFailure, its containers' restarts
  (Kubernetes counts both against `backoffLimit`);
- completions: NonIndexed, `succeeded >= completions`; Indexed, every index 0..completions-1
  has succeeded (completedIndexes); with no `completions` (a work queue) the Job is complete
  once a pod succeeded and none is active;
- pod backoff: after failures, a new pod waits base * 2^(failures-1) seconds (base 10 s, at
  most 6 minutes, as Kubernetes' DefaultJobPodFailureBackOff) from the last failure.

Invariants: `plan` never asks for more than `parallelism` active pods, never for a pod of an
index that already succeeded or runs, and once a Job has finished (Complete or Failed) it asks
only to stop what still runs.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.controllers.job.indexes import index_of
from controlplane.objects.pods import deletion_rank, is_active, ready_since
from pilothouse.conditions import seconds
from pilothouse.v1 import objects_pb2

BACKOFF_BASE = 10.0
BACKOFF_MAX = 360.0


class Outcome(enum.Enum):
    COMPLETE = "Complete"
    BACKOFF_LIMIT = "BackoffLimitExceeded"
    DEADLINE = "DeadlineExceeded"


MESSAGES = {
    Outcome.BACKOFF_LIMIT: "Job has reached the specified backoff limit",
    Outcome.DEADLINE: "Job was active longer than specified deadline",
}


@dataclass(frozen=True, slots=True)
class Observed:
    active: tuple[objects_pb2.Pod, ...]
    failed: tuple[objects_pb2.Pod, ...]  # the Failed pods still there (the last failure)
    restarts: int  # container restarts of OnFailure pods
    succeeded_count: int  # the Job's count (see the module)
    failed_count: int
    done_indexes: frozenset[int] = frozenset()  # Indexed: the indexes that succeeded

    @property
    def failures(self) -> int:
        return self.failed_count + self.restarts

    @property
    def ready(self) -> int:
        return sum(1 for p in self.active if ready_since(p) is not None)

    def active_indexes(self) -> set[int]:
        return {i for p in self.active if (i := index_of(p)) is not None}


def observe(
    pods: Sequence[objects_pb2.Pod],
    *,
    restart_policy: str,
    succeeded: int,
    failed: int,
    done_indexes: frozenset[int] = frozenset(),
) -> Observed:
    """The Job's pods with its counts (`succeeded`, `failed`: `tracking.Tally`'s)."""
    restarts = 0
    if restart_policy == "OnFailure":
        restarts = sum(c.restart_count for p in pods for c in p.status.container_statuses)
    return Observed(
        active=tuple(p for p in pods if is_active(p)),
        failed=tuple(p for p in pods if p.status.phase == "Failed"),
        restarts=restarts,
        succeeded_count=succeeded,
        failed_count=failed,
        done_indexes=done_indexes,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    create: int = 0  # NonIndexed pods to create
    indexes: tuple[int, ...] = ()  # Indexed: the indexes to create pods for
    delete: tuple[objects_pb2.Pod, ...] = ()  # active pods to stop
    outcome: Outcome | None = None  # the Job finishes now, so
    wait: float | None = None  # seconds until pods may be created (backoff), or a deadline


def last_failure(observed: Observed) -> float | None:
    times = [
        seconds(c.state.terminated.finished_at)
        for p in observed.failed
        for c in p.status.container_statuses
        if c.state.HasField("terminated") and c.state.terminated.HasField("finished_at")
    ]
    return max(times) if times else None


def backoff_delay(failures: int, *, base: float = BACKOFF_BASE) -> float:
    if failures <= 0:
        return 0.0
    return min(base * 2 ** (failures - 1), BACKOFF_MAX)


def plan(
    spec: objects_pb2.JobSpec,
    observed: Observed,
    *,
    started: float | None,
    now: float,
    backoff_base: float = BACKOFF_BASE,
) -> Plan:
    """The next step of an unfinished, unsuspended Job (see the module's invariants)."""
    deadline_wait: float | None = None
    if spec.HasField("active_deadline_seconds") and started is not None:
        left = started + spec.active_deadline_seconds - now
        if left <= 0:
            return Plan(delete=observed.active, outcome=Outcome.DEADLINE)
        deadline_wait = left
    limit = spec.backoff_limit if spec.HasField("backoff_limit") else 6
    if observed.failures > limit:
        return Plan(delete=observed.active, outcome=Outcome.BACKOFF_LIMIT)
    parallelism = spec.parallelism if spec.HasField("parallelism") else 1
    indexed = spec.completion_mode == "Indexed"
    if indexed:
        done = set(observed.done_indexes)
        if len(done & set(range(spec.completions))) >= spec.completions:
            return Plan(delete=observed.active, outcome=Outcome.COMPLETE)
        running = observed.active_indexes()
        pending = [i for i in range(spec.completions) if i not in done and i not in running]
        room = max(parallelism - len(observed.active), 0)
        wanted = tuple(pending[:room])
        surplus = len(observed.active) - parallelism
        return _paced(
            Plan(indexes=wanted, delete=_surplus(observed, surplus)),
            observed,
            now=now,
            base=backoff_base,
            deadline_wait=deadline_wait,
        )
    succeeded = observed.succeeded_count
    if spec.HasField("completions"):
        if succeeded >= spec.completions:
            return Plan(delete=observed.active, outcome=Outcome.COMPLETE)
        want = min(parallelism, spec.completions - succeeded)
    else:
        if succeeded and not observed.active:
            return Plan(outcome=Outcome.COMPLETE)
        want = 0 if succeeded else parallelism
    active = len(observed.active)
    step = Plan(create=max(want - active, 0), delete=_surplus(observed, active - want))
    return _paced(step, observed, now=now, base=backoff_base, deadline_wait=deadline_wait)


def _surplus(observed: Observed, count: int) -> tuple[objects_pb2.Pod, ...]:
    if count <= 0:
        return ()
    return tuple(sorted(observed.active, key=deletion_rank)[:count])


def _paced(
    step: Plan, observed: Observed, *, now: float, base: float, deadline_wait: float | None
) -> Plan:
    """Hold back new pods while the pod backoff after the last failure runs."""
    if not (step.create or step.indexes) or not observed.failed:
        return Plan(
            create=step.create, indexes=step.indexes, delete=step.delete, wait=deadline_wait
        )
    last = last_failure(observed)
    ready_at = (last or now) + backoff_delay(observed.failed_count, base=base)
    if last is not None and ready_at > now:
        wait = ready_at - now
        if deadline_wait is not None:
            wait = min(wait, deadline_wait)
        return Plan(delete=step.delete, wait=wait)
    return Plan(create=step.create, indexes=step.indexes, delete=step.delete, wait=deadline_wait)

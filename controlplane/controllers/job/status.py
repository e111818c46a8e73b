"""The Job's status: its finishing conditions, Suspended, and the pod counts.

Invariants: a condition's lastTransitionTime moves only when its status changes
(`pilothouse.conditions`), and lastProbeTime follows it; a finished Job counts no active pods.
"""

from __future__ import annotations

from controlplane.controllers.job import progress
from pilothouse.conditions import find_condition, set_condition
from pilothouse.v1 import objects_pb2


def finished(job: objects_pb2.Job) -> objects_pb2.Condition | None:
    """The Job's Complete or Failed condition when it is True."""
    for type_ in ("Complete", "Failed"):
        condition = find_condition(job.status.conditions, type_)
        if condition is not None and condition.status == "True":
            return condition
    return None


def put_condition(
    status: objects_pb2.JobStatus, type_: str, value: str, reason: str, message: str, now: float
) -> None:
    """Set condition `type_` of the Job (lastProbeTime follows lastTransitionTime); a False
    one only replaces a condition that is there."""
    if value == "False" and find_condition(status.conditions, type_) is None:
        return  # never suspended: no condition to clear
    wanted = objects_pb2.Condition(type=type_, status=value, reason=reason, message=message)
    conditions = set_condition(status.conditions, wanted, now=now, update_time=False)
    for condition in conditions:
        condition.last_probe_time.CopyFrom(condition.last_transition_time)
    del status.conditions[:]
    status.conditions.extend(conditions)


def copy_counts(
    status: objects_pb2.JobStatus,
    job: objects_pb2.Job,
    observed: progress.Observed,
    counted: objects_pb2.JobStatus,
) -> None:
    """The pod counts of `status`: active and ready as `observed`, the rest as `counted`."""
    status.active = 0 if finished(job) is not None else len(observed.active)
    status.ready = observed.ready
    status.succeeded, status.failed = counted.succeeded, counted.failed
    status.completed_indexes = counted.completed_indexes
    status.uncounted_terminated_pods.CopyFrom(counted.uncounted_terminated_pods)

"""A CronJob's Jobs: the one made for a scheduled time, and what its history keeps (pure).

Invariants (Kubernetes' cronjob controller v2):
- the Job for scheduled time t is named `<cronjob>-<t in minutes since the epoch>`, so a
  retry after a crash finds the Job it made instead of making a second one;
- it carries the template's labels and annotations, the annotation
  `batch.kubernetes.io/cronjob-scheduled-timestamp` (RFC 3339) and a controlling reference to
  the CronJob;
- history: of the finished Jobs, the newest `successfulJobsHistoryLimit` that succeeded and
  `failedJobsHistoryLimit` that failed are kept; older ones are deleted.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from controlplane.objects.podtemplate import owner_reference
from pilothouse.conditions import find_condition, seconds
from pilothouse.v1 import objects_pb2

SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def job_name(cronjob: objects_pb2.CronJob, scheduled: float) -> str:
    return f"{cronjob.metadata.name}-{int(scheduled // 60)}"


def new_job(cronjob: objects_pb2.CronJob, scheduled: float) -> objects_pb2.Job:
    template = cronjob.spec.job_template
    job = objects_pb2.Job()
    job.metadata.name = job_name(cronjob, scheduled)
    job.metadata.namespace = cronjob.metadata.namespace
    job.metadata.labels.update(template.metadata.labels)
    job.metadata.annotations.update(template.metadata.annotations)
    at = datetime.datetime.fromtimestamp(scheduled, tz=datetime.UTC)
    job.metadata.annotations[SCHEDULED_AT] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    job.metadata.owner_references.append(owner_reference(cronjob))
    job.spec.CopyFrom(template.spec)
    return job


def outcome(job: objects_pb2.Job) -> str | None:
    """ "Complete" or "Failed" once the Job finished, else None."""
    for type_ in ("Complete", "Failed"):
        condition = find_condition(job.status.conditions, type_)
        if condition is not None and condition.status == "True":
            return type_
    return None


def _started(job: objects_pb2.Job) -> float:
    if job.status.HasField("start_time"):
        return seconds(job.status.start_time)
    return seconds(job.metadata.creation_timestamp)


def surplus(
    jobs: Sequence[objects_pb2.Job], *, successful_limit: int, failed_limit: int
) -> list[objects_pb2.Job]:
    """The finished Jobs beyond the history limits, oldest first."""
    out: list[objects_pb2.Job] = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        done = sorted((j for j in jobs if outcome(j) == kind), key=_started)
        if len(done) > limit:
            out.extend(done[: len(done) - limit])
    return out


def reference(job: objects_pb2.Job) -> objects_pb2.ObjectReference:
    return objects_pb2.ObjectReference(
        api_version="batch/v1",
        kind="Job",
        namespace=job.metadata.namespace,
        name=job.metadata.name,
        uid=job.metadata.uid,
    )

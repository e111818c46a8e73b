"""Jobs and CronJobs (batch/v1): counts, deadlines, completion mode, the pod template's restart
policy, and a CronJob's schedule, time zone and concurrency policy.

Rules as batch/v1 validation has them: counts and deadlines are non-negative; an Indexed Job
needs completions (at most 100000); the template's restartPolicy is OnFailure or Never; a
selector is generated, so one given without `manualSelector: true` is refused; a CronJob's
name leaves room for the 11-character job suffix (at most 52 characters) and its schedule is
standard cron (`pilothouse.cron`).
"""

from __future__ import annotations

from pilothouse import cron
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.meta import labels
from pilothouse.manifests.validation.pods import pod_spec
from pilothouse.v1 import objects_pb2

JOB_RESTART_POLICIES = ("OnFailure", "Never")
COMPLETION_MODES = ("Indexed", "NonIndexed")
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
MAX_INDEXED_COMPLETIONS = 100_000
MAX_CRONJOB_NAME = 52


def job_spec(
    found: Findings, spec: objects_pb2.JobSpec, path: str, *, holder_has_template: bool
) -> None:
    for field, json in (
        ("parallelism", "parallelism"),
        ("completions", "completions"),
        ("backoff_limit", "backoffLimit"),
        ("active_deadline_seconds", "activeDeadlineSeconds"),
        ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
    ):
        if spec.HasField(field):
            found.nonnegative(f"{path}.{json}", getattr(spec, field))
    if spec.completion_mode and spec.completion_mode not in COMPLETION_MODES:
        found.unsupported(f"{path}.completionMode", spec.completion_mode, COMPLETION_MODES)
    if spec.completion_mode == "Indexed":
        if not spec.HasField("completions"):
            found.required(f"{path}.completions", "when completion mode is Indexed")
        elif spec.completions > MAX_INDEXED_COMPLETIONS:
            found.invalid(
                f"{path}.completions",
                spec.completions,
                f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion "
                "mode is Indexed",
            )
    if spec.selector.match_labels and not spec.manual_selector:
        found.invalid(
            f"{path}.selector",
            dict(spec.selector.match_labels),
            "`selector` will be auto-generated",
        )
    labels(found, f"{path}.selector.matchLabels", spec.selector.match_labels)
    template = spec.template
    labels(found, f"{path}.template.metadata.labels", template.metadata.labels)
    selected = spec.selector.match_labels
    if selected and any(template.metadata.labels.get(k) != v for k, v in selected.items()):
        found.invalid(
            f"{path}.template.metadata.labels",
            dict(template.metadata.labels),
            "`selector` does not match template `labels`",
        )
    if not holder_has_template:
        found.required(f"{path}.template")
        return
    pod_spec(found, template.spec, f"{path}.template.spec", restart_policies=JOB_RESTART_POLICIES)


def job(found: Findings, message: objects_pb2.Job) -> None:
    job_spec(found, message.spec, "spec", holder_has_template=message.spec.HasField("template"))


def cron_job(found: Findings, message: objects_pb2.CronJob) -> None:
    name = message.metadata.name
    if len(name) > MAX_CRONJOB_NAME:
        found.invalid("metadata.name", name, f"must be no more than {MAX_CRONJOB_NAME} characters")
    spec = message.spec
    if not spec.schedule:
        found.required("spec.schedule")
    else:
        why = cron.problem(spec.schedule)
        if why is not None:
            found.invalid("spec.schedule", spec.schedule, why)
    if spec.HasField("time_zone"):
        why = cron.zone_problem(spec.time_zone) if spec.time_zone else "must not be empty"
        if why is not None:
            found.invalid("spec.timeZone", spec.time_zone, why)
    if spec.concurrency_policy and spec.concurrency_policy not in CONCURRENCY_POLICIES:
        found.unsupported("spec.concurrencyPolicy", spec.concurrency_policy, CONCURRENCY_POLICIES)
    for field, json in (
        ("starting_deadline_seconds", "startingDeadlineSeconds"),
        ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
        ("failed_jobs_history_limit", "failedJobsHistoryLimit"),
    ):
        if spec.HasField(field):
            found.nonnegative(f"spec.{json}", getattr(spec, field))
    template = spec.job_template
    labels(found, "spec.jobTemplate.metadata.labels", template.metadata.labels)
    job_spec(
        found,
        template.spec,
        "spec.jobTemplate.spec",
        holder_has_template=template.spec.HasField("template"),
    )

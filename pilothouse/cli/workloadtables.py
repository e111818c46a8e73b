"""kubectl's `get` columns for Jobs, CronJobs, DaemonSets, StatefulSets, ReplicationControllers,
ControllerRevisions, storage (claims, volumes, classes), Namespaces and ServiceAccounts.

Invariant: each function returns (headers, row) as `tables` expects, with kubectl's column
names and cell forms (COMPLETIONS "3/5" or "0/1 of 2", access modes RWO/ROX/RWX/RWOP, a
default class "local-path (default)", `<none>` and `<unset>` where kubectl prints them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pilothouse.cli.cells import NONE, age, human_duration, selector_text, template_cells
from pilothouse.conditions import find_condition, seconds
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

_RowFn = Callable[[Any, datetime], tuple[str, ...]]
Columns = tuple[tuple[str, ...], _RowFn]
_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def access_modes(modes: list[str] | Any) -> str:
    return ",".join(_MODES.get(m, m) for m in modes)


def job_status(job: o.Job) -> str:
    for type_ in ("Failed", "Complete", "Suspended"):
        condition = find_condition(job.status.conditions, type_)
        if condition is not None and condition.status == "True":
            return type_
    return "Running"


def job_completions(job: o.Job) -> str:
    succeeded = job.status.succeeded
    if job.spec.HasField("completions"):
        return f"{succeeded}/{job.spec.completions}"
    parallelism = job.spec.parallelism if job.spec.HasField("parallelism") else 1
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(job: o.Job, now: datetime) -> str:
    if not job.status.HasField("start_time"):
        return ""
    start = seconds(job.status.start_time)
    end = (
        seconds(job.status.completion_time)
        if job.status.HasField("completion_time")
        else now.timestamp()
    )
    return human_duration(end - start)


def _job(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE")
    if wide:
        headers += ("CONTAINERS", "IMAGES", "SELECTOR")

    def row(job: o.Job, now: datetime) -> tuple[str, ...]:
        cells = (
            job.metadata.name,
            job_status(job),
            job_completions(job),
            job_duration(job, now),
            age(job.metadata.creation_timestamp, now),
        )
        if wide:
            selector = o.LabelSelector()
            selector.CopyFrom(job.spec.selector)
            if not selector.match_labels:
                selector.match_labels["batch.kubernetes.io/controller-uid"] = job.metadata.uid
            cells += template_cells(job.spec.template, selector)
        return cells

    return headers, row


def _cron_job(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE")
    if wide:
        headers += ("CONTAINERS", "IMAGES", "SELECTOR")

    def row(cj: o.CronJob, now: datetime) -> tuple[str, ...]:
        last = cj.status.last_schedule_time if cj.status.HasField("last_schedule_time") else None
        cells = (
            cj.metadata.name,
            cj.spec.schedule,
            cj.spec.time_zone if cj.spec.HasField("time_zone") else NONE,
            "True" if cj.spec.suspend else "False",
            str(len(cj.status.active)),
            age(last, now) if last is not None else NONE,
            age(cj.metadata.creation_timestamp, now),
        )
        if wide:
            template = cj.spec.job_template.spec.template
            cells += template_cells(template, cj.spec.job_template.spec.selector)
        return cells

    return headers, row


def _daemon_set(*, wide: bool, pods: object) -> Columns:
    headers = (
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    )
    if wide:
        headers += ("CONTAINERS", "IMAGES", "SELECTOR")

    def row(ds: o.DaemonSet, now: datetime) -> tuple[str, ...]:
        s = ds.status
        cells = (
            ds.metadata.name,
            str(s.desired_number_scheduled),
            str(s.current_number_scheduled),
            str(s.number_ready),
            str(s.updated_number_scheduled),
            str(s.number_available),
            selector_text(ds.spec.template.spec.node_selector),
            age(ds.metadata.creation_timestamp, now),
        )
        if wide:
            cells += template_cells(ds.spec.template, ds.spec.selector)
        return cells

    return headers, row


def _stateful_set(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "READY", "AGE")
    if wide:
        headers += ("CONTAINERS", "IMAGES")

    def row(sts: o.StatefulSet, now: datetime) -> tuple[str, ...]:
        desired = sts.spec.replicas if sts.spec.HasField("replicas") else 1
        cells = (
            sts.metadata.name,
            f"{sts.status.ready_replicas}/{desired}",
            age(sts.metadata.creation_timestamp, now),
        )
        if wide:
            cells += template_cells(sts.spec.template, sts.spec.selector)[:2]
        return cells

    return headers, row


def replicas(selector: Callable[[Any], o.LabelSelector]) -> Callable[..., Columns]:
    """The columns of a ReplicaSet or a ReplicationController; `selector` gives its selector
    as a LabelSelector (a ReplicationController's is a plain map)."""

    def columns(*, wide: bool, pods: object) -> Columns:
        headers = ("NAME", "DESIRED", "CURRENT", "READY", "AGE")
        if wide:
            headers += ("CONTAINERS", "IMAGES", "SELECTOR")

        def row(owner: Any, now: datetime) -> tuple[str, ...]:
            desired = owner.spec.replicas if owner.spec.HasField("replicas") else 1
            cells = (
                owner.metadata.name,
                str(desired),
                str(owner.status.replicas),
                str(owner.status.ready_replicas),
                age(owner.metadata.creation_timestamp, now),
            )
            if wide:
                cells += template_cells(owner.spec.template, selector(owner))
            return cells

        return headers, row

    return columns


_replication_controller = replicas(lambda rc: o.LabelSelector(match_labels=dict(rc.spec.selector)))


def _controller_revision(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "CONTROLLER", "REVISION", "AGE")

    def row(rev: o.ControllerRevision, now: datetime) -> tuple[str, ...]:
        owner = next((r for r in rev.metadata.owner_references if r.controller), None)
        controller = f"{owner.kind.lower()}.apps/{owner.name}" if owner is not None else NONE
        return (
            rev.metadata.name,
            controller,
            str(rev.revision),
            age(rev.metadata.creation_timestamp, now),
        )

    return headers, row


def _claim(*, wide: bool, pods: object) -> Columns:
    headers = (
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS MODES",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "AGE",
    )
    if wide:
        headers += ("VOLUMEMODE",)

    def row(pvc: o.PersistentVolumeClaim, now: datetime) -> tuple[str, ...]:
        bound = pvc.status.phase == "Bound"
        cells = (
            pvc.metadata.name,
            "Terminating" if pvc.metadata.HasField("deletion_timestamp") else pvc.status.phase,
            pvc.spec.volume_name,
            pvc.status.capacity.get("storage", "") if bound else "",
            access_modes(pvc.status.access_modes) if bound else "",
            pvc.spec.storage_class_name if pvc.spec.HasField("storage_class_name") else NONE,
            "<unset>",
            age(pvc.metadata.creation_timestamp, now),
        )
        if wide:
            cells += (pvc.spec.volume_mode or "Filesystem",)
        return cells

    return headers, row


def _volume(*, wide: bool, pods: object) -> Columns:
    headers = (
        "NAME",
        "CAPACITY",
        "ACCESS MODES",
        "RECLAIM POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
        "VOLUMEATTRIBUTESCLASS",
        "REASON",
        "AGE",
    )
    if wide:
        headers += ("VOLUMEMODE",)

    def row(pv: o.PersistentVolume, now: datetime) -> tuple[str, ...]:
        ref = pv.spec.claim_ref
        cells = (
            pv.metadata.name,
            pv.spec.capacity.get("storage", ""),
            access_modes(pv.spec.access_modes),
            pv.spec.persistent_volume_reclaim_policy,
            pv.status.phase,
            f"{ref.namespace}/{ref.name}" if ref.name else "",
            pv.spec.storage_class_name,
            "<unset>",
            pv.status.reason,
            age(pv.metadata.creation_timestamp, now),
        )
        if wide:
            cells += (pv.spec.volume_mode or "Filesystem",)
        return cells

    return headers, row


def _storage_class(*, wide: bool, pods: object) -> Columns:
    headers = (
        "NAME",
        "PROVISIONER",
        "RECLAIMPOLICY",
        "VOLUMEBINDINGMODE",
        "ALLOWVOLUMEEXPANSION",
        "AGE",
    )

    def row(sc: o.StorageClass, now: datetime) -> tuple[str, ...]:
        name = sc.metadata.name
        if sc.metadata.annotations.get(DEFAULT_CLASS) == "true":
            name += " (default)"
        return (
            name,
            sc.provisioner,
            sc.reclaim_policy or "Delete",
            sc.volume_binding_mode or "Immediate",
            "true" if sc.allow_volume_expansion else "false",
            age(sc.metadata.creation_timestamp, now),
        )

    return headers, row


def _namespace(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "STATUS", "AGE")

    def row(ns: o.Namespace, now: datetime) -> tuple[str, ...]:
        return (
            ns.metadata.name,
            ns.status.phase or "Active",
            age(ns.metadata.creation_timestamp, now),
        )

    return headers, row


def _service_account(*, wide: bool, pods: object) -> Columns:
    headers = ("NAME", "SECRETS", "AGE")

    def row(sa: o.ServiceAccount, now: datetime) -> tuple[str, ...]:
        return (sa.metadata.name, str(len(sa.secrets)), age(sa.metadata.creation_timestamp, now))

    return headers, row


COLUMNS: dict[Kind, Callable[..., Columns]] = {
    Kind.JOB: _job,
    Kind.CRONJOB: _cron_job,
    Kind.DAEMONSET: _daemon_set,
    Kind.STATEFULSET: _stateful_set,
    Kind.REPLICATIONCONTROLLER: _replication_controller,
    Kind.CONTROLLERREVISION: _controller_revision,
    Kind.PERSISTENTVOLUMECLAIM: _claim,
    Kind.PERSISTENTVOLUME: _volume,
    Kind.STORAGECLASS: _storage_class,
    Kind.NAMESPACE: _namespace,
    Kind.SERVICEACCOUNT: _service_account,
}

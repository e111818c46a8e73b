"""Jobs, CronJobs, DaemonSets, StatefulSets, ReplicationControllers, storage, Namespaces and
ServiceAccounts as kubectl describes them (the fields a person looks for first, in kubectl's
order and words; each object's events follow, added by `verbs.page`).
"""

from __future__ import annotations

from pilothouse.cli import tables, workloadtables
from pilothouse.cli.describe import sections
from pilothouse.cli.describe.workloads import _template
from pilothouse.cli.sheet import NONE, Sheet, mapping, timestamp
from pilothouse.v1 import objects_pb2 as o


def _controlled_by(sheet: Sheet, meta: o.ObjectMeta) -> None:
    owner = next((r for r in meta.owner_references if r.controller), None)
    if owner is not None:
        sheet.field("Controlled By", f"{owner.kind}/{owner.name}")


def job(sheet: Sheet, j: o.Job) -> None:
    sections.metadata(sheet, j.metadata)
    labels = j.spec.selector.match_labels or {"batch.kubernetes.io/controller-uid": j.metadata.uid}
    sheet.field("Selector", tables.selector_text(labels))
    _controlled_by(sheet, j.metadata)
    sheet.field("Parallelism", j.spec.parallelism if j.spec.HasField("parallelism") else 1)
    sheet.field("Completions", j.spec.completions if j.spec.HasField("completions") else NONE)
    sheet.field("Completion Mode", j.spec.completion_mode or "NonIndexed")
    sheet.field("Suspend", "true" if j.spec.suspend else "false")
    sheet.field("Backoff Limit", j.spec.backoff_limit if j.spec.HasField("backoff_limit") else 6)
    if j.spec.HasField("ttl_seconds_after_finished"):
        sheet.field("TTL Seconds After Finished", j.spec.ttl_seconds_after_finished)
    if j.spec.HasField("active_deadline_seconds"):
        sheet.field("Active Deadline Seconds", f"{j.spec.active_deadline_seconds}s")
    sheet.field("Start Time", timestamp(j.status.start_time))
    if j.status.HasField("completion_time"):
        sheet.field("Completed At", timestamp(j.status.completion_time))
    s = j.status
    sheet.field(
        "Pods Statuses",
        f"{s.active} Active ({s.ready} Ready) / {s.succeeded} Succeeded / {s.failed} Failed",
    )
    if j.spec.completion_mode == "Indexed":
        sheet.field("Completed Indexes", s.completed_indexes or NONE)
    _template(sheet, j.spec.template)
    sections.condition_table(sheet, j.status.conditions, with_reason=True)


def cron_job(sheet: Sheet, c: o.CronJob) -> None:
    sections.metadata(sheet, c.metadata)
    sheet.field("Schedule", c.spec.schedule)
    sheet.field("Time Zone", c.spec.time_zone if c.spec.HasField("time_zone") else NONE)
    sheet.field("Concurrency Policy", c.spec.concurrency_policy or "Allow")
    sheet.field("Suspend", "True" if c.spec.suspend else "False")
    sheet.field("Successful Job History Limit", c.spec.successful_jobs_history_limit)
    sheet.field("Failed Job History Limit", c.spec.failed_jobs_history_limit)
    if c.spec.HasField("starting_deadline_seconds"):
        sheet.field("Starting Deadline Seconds", f"{c.spec.starting_deadline_seconds}s")
    else:
        sheet.field("Starting Deadline Seconds", NONE)
    template = c.spec.job_template.spec
    sheet.field("Parallelism", template.parallelism if template.HasField("parallelism") else 1)
    sheet.field("Completions", template.completions if template.HasField("completions") else NONE)
    _template(sheet, template.template)
    last = c.status.last_schedule_time if c.status.HasField("last_schedule_time") else None
    sheet.field("Last Schedule Time", timestamp(last))
    sheet.field("Active Jobs", ", ".join(ref.name for ref in c.status.active) or NONE)


def daemon_set(sheet: Sheet, d: o.DaemonSet) -> None:
    sections.metadata(sheet, d.metadata)
    sheet.field("Selector", tables.selector_text(d.spec.selector.match_labels))
    sheet.field("Node-Selector", mapping(d.spec.template.spec.node_selector))
    s = d.status
    sheet.field("Desired Number of Nodes Scheduled", s.desired_number_scheduled)
    sheet.field("Current Number of Nodes Scheduled", s.current_number_scheduled)
    sheet.field("Number of Nodes Scheduled with Up-to-date Pods", s.updated_number_scheduled)
    sheet.field("Number of Nodes Scheduled with Available Pods", s.number_available)
    sheet.field("Number of Nodes Misscheduled", s.number_misscheduled)
    sheet.field("Update Strategy", d.spec.update_strategy.type or "RollingUpdate")
    _template(sheet, d.spec.template)


def stateful_set(sheet: Sheet, s: o.StatefulSet) -> None:
    sections.metadata(sheet, s.metadata)
    sheet.field("Selector", tables.selector_text(s.spec.selector.match_labels))
    desired = s.spec.replicas if s.spec.HasField("replicas") else 1
    sheet.field("Replicas", f"{desired} desired | {s.status.replicas} total")
    sheet.field("Update Strategy", s.spec.update_strategy.type or "RollingUpdate")
    if s.spec.update_strategy.rolling_update.HasField("partition"):
        sheet.field("  Partition", s.spec.update_strategy.rolling_update.partition)
    sheet.field("Pod Management Policy", s.spec.pod_management_policy or "OrderedReady")
    sheet.field("Service Name", s.spec.service_name)
    sheet.field("Pods Status", f"{s.status.ready_replicas} Running / {s.status.replicas} total")
    _template(sheet, s.spec.template)
    sheet.heading("Volume Claims:")
    if not s.spec.volume_claim_templates:
        sheet.field("  ", NONE)
    for claim in s.spec.volume_claim_templates:
        sheet.field("Name", claim.metadata.name, level=1)
        sheet.field("StorageClass", claim.spec.storage_class_name, level=1)
        sheet.field("Capacity", claim.spec.resources.requests.get("storage", ""), level=1)
        sheet.field("Access Modes", workloadtables.access_modes(claim.spec.access_modes), level=1)


def replication_controller(sheet: Sheet, rc: o.ReplicationController) -> None:
    sections.metadata(sheet, rc.metadata)
    sheet.field("Selector", tables.selector_text(rc.spec.selector))
    desired = rc.spec.replicas if rc.spec.HasField("replicas") else 1
    sheet.field("Replicas", f"{rc.status.replicas} current / {desired} desired")
    sheet.field("Pods Status", f"{rc.status.ready_replicas} Running / {rc.status.replicas} total")
    _template(sheet, rc.spec.template)


def claim(sheet: Sheet, c: o.PersistentVolumeClaim) -> None:
    sections.metadata(sheet, c.metadata)
    sheet.field(
        "StorageClass", c.spec.storage_class_name if c.spec.HasField("storage_class_name") else ""
    )
    sheet.field("Status", c.status.phase or "Pending")
    sheet.field("Volume", c.spec.volume_name)
    sheet.field("Capacity", c.status.capacity.get("storage", ""))
    sheet.field("Access Modes", workloadtables.access_modes(c.status.access_modes))
    sheet.field("VolumeMode", c.spec.volume_mode or "Filesystem")


def volume(sheet: Sheet, pv: o.PersistentVolume) -> None:
    sections.metadata(sheet, pv.metadata, namespaced=False)
    sheet.field("StorageClass", pv.spec.storage_class_name)
    sheet.field("Status", pv.status.phase)
    ref = pv.spec.claim_ref
    sheet.field("Claim", f"{ref.namespace}/{ref.name}" if ref.name else "")
    sheet.field("Reclaim Policy", pv.spec.persistent_volume_reclaim_policy)
    sheet.field("Access Modes", workloadtables.access_modes(pv.spec.access_modes))
    sheet.field("VolumeMode", pv.spec.volume_mode or "Filesystem")
    sheet.field("Capacity", pv.spec.capacity.get("storage", ""))
    terms = []
    for i, term in enumerate(pv.spec.node_affinity.required.node_selector_terms):
        parts = [
            f"{r.key} {r.operator.lower()} [{', '.join(r.values)}]"
            for r in [*term.match_expressions, *term.match_fields]
        ]
        terms.append(f"Term {i}: {', '.join(parts)}")
    sheet.field("Node Affinity", "\n".join(terms) or NONE)
    sheet.heading("Source:")
    if pv.spec.HasField("host_path"):
        sheet.field("Type", "HostPath (bare host directory volume)", level=1)
        sheet.field("Path", pv.spec.host_path.path, level=1)
        sheet.field("HostPathType", pv.spec.host_path.type, level=1)
    elif pv.spec.HasField("local"):
        sheet.field("Type", "LocalVolume (a persistent volume backed by local storage)", level=1)
        sheet.field("Path", pv.spec.local.path, level=1)


def storage_class(sheet: Sheet, sc: o.StorageClass) -> None:
    sheet.field("Name", sc.metadata.name)
    default = sc.metadata.annotations.get(workloadtables.DEFAULT_CLASS) == "true"
    sheet.field("IsDefaultClass", "Yes" if default else "No")
    sheet.field("Annotations", mapping(sc.metadata.annotations, separator="="))
    sheet.field("Provisioner", sc.provisioner)
    sheet.field("Parameters", mapping(sc.parameters) if sc.parameters else NONE)
    sheet.field("AllowVolumeExpansion", "True" if sc.allow_volume_expansion else "<unset>")
    sheet.field("ReclaimPolicy", sc.reclaim_policy or "Delete")
    sheet.field("VolumeBindingMode", sc.volume_binding_mode or "Immediate")


def namespace(sheet: Sheet, ns: o.Namespace) -> None:
    sheet.field("Name", ns.metadata.name)
    sheet.field("Labels", mapping(ns.metadata.labels))
    sheet.field("Annotations", mapping(ns.metadata.annotations, separator=": "))
    sheet.field("Status", ns.status.phase or "Active")
    sections.condition_table(sheet, ns.status.conditions, with_reason=True)


def service_account(sheet: Sheet, sa: o.ServiceAccount) -> None:
    sections.metadata(sheet, sa.metadata)
    sheet.field("Mountable secrets", ", ".join(s.name for s in sa.secrets) or NONE)
    sheet.field("Tokens", NONE)


DESCRIBERS = {
    o.Job: job,
    o.CronJob: cron_job,
    o.DaemonSet: daemon_set,
    o.StatefulSet: stateful_set,
    o.ReplicationController: replication_controller,
    o.PersistentVolumeClaim: claim,
    o.PersistentVolume: volume,
    o.StorageClass: storage_class,
    o.Namespace: namespace,
    o.ServiceAccount: service_account,
}

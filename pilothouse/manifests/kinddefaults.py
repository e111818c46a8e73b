"""Kubernetes' defaults for the kinds of issue 15: ReplicationControllers, Jobs, CronJobs,
DaemonSets, StatefulSets, storage (claims, volumes, classes) and Namespaces.

Invariants: as in `defaults` (whose `set_defaults` calls `set_kind_defaults` here), only unset
fields are filled, so applying twice changes nothing, and nothing is ever rejected. Pod
templates are defaulted by the `pod_spec` function `defaults` hands in (one definition of a
pod spec's defaults). Values are apps/v1, batch/v1, core/v1 and storage/v1's own:
- Job: parallelism 1; completions 1 when neither is set; backoffLimit 6; completionMode
  NonIndexed; suspend false. (The pod selector is not generated: the job controller selects
  its pods by owner uid, see `controlplane.controllers.job`.)
- CronJob: concurrencyPolicy Allow, suspend false, history limits 3 successful, 1 failed.
- DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0; revisionHistoryLimit 10.
- StatefulSet: replicas 1, podManagementPolicy OrderedReady, RollingUpdate with partition 0,
  revisionHistoryLimit 10, PVC retention Retain/Retain; claim templates volumeMode Filesystem.
- ReplicationController: replicas 1; an empty selector becomes the template's labels.
- PersistentVolumeClaim: volumeMode Filesystem. PersistentVolume: reclaim policy Retain,
  volumeMode Filesystem. StorageClass: reclaimPolicy Delete, volumeBindingMode Immediate.
- Namespace: phase Active.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from pilothouse.v1 import objects_pb2

DEFAULT_BACKOFF_LIMIT = 6
DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1
DEFAULT_REVISION_HISTORY_LIMIT = 10

PodSpecDefaults = Callable[[objects_pb2.PodSpec], None]


def set_kind_defaults(message: Message, *, pod_spec: PodSpecDefaults) -> None:
    """Fill the defaults of one object of the kinds above, in place; others are left alone."""
    if isinstance(message, objects_pb2.Job):
        job_spec(message.spec, pod_spec=pod_spec)
    elif isinstance(message, objects_pb2.CronJob):
        _cron_job_spec(message.spec, pod_spec=pod_spec)
    elif isinstance(message, objects_pb2.DaemonSet):
        _daemon_set_spec(message.spec, pod_spec=pod_spec)
    elif isinstance(message, objects_pb2.StatefulSet):
        _stateful_set_spec(message.spec, pod_spec=pod_spec)
    elif isinstance(message, objects_pb2.ReplicationController):
        spec = message.spec
        if not spec.HasField("replicas"):
            spec.replicas = 1
        if not spec.selector:
            spec.selector.update(spec.template.metadata.labels)
        pod_spec(spec.template.spec)
    elif isinstance(message, objects_pb2.PersistentVolumeClaim):
        claim_spec(message.spec)
    elif isinstance(message, objects_pb2.PersistentVolume):
        if not message.spec.persistent_volume_reclaim_policy:
            message.spec.persistent_volume_reclaim_policy = "Retain"
        if not message.spec.HasField("volume_mode"):
            message.spec.volume_mode = "Filesystem"
    elif isinstance(message, objects_pb2.StorageClass):
        if not message.HasField("reclaim_policy"):
            message.reclaim_policy = "Delete"
        if not message.HasField("volume_binding_mode"):
            message.volume_binding_mode = "Immediate"
    elif isinstance(message, objects_pb2.Namespace) and not message.status.phase:
        message.status.phase = "Active"
    elif isinstance(message, objects_pb2.HorizontalPodAutoscaler):
        _autoscaler_spec(message.spec)


def job_spec(spec: objects_pb2.JobSpec, *, pod_spec: PodSpecDefaults) -> None:
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = DEFAULT_BACKOFF_LIMIT
    if not spec.completion_mode:
        spec.completion_mode = "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    pod_spec(spec.template.spec)


def _cron_job_spec(spec: objects_pb2.CronJobSpec, *, pod_spec: PodSpecDefaults) -> None:
    if not spec.concurrency_policy:
        spec.concurrency_policy = "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = DEFAULT_SUCCESSFUL_HISTORY
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = DEFAULT_FAILED_HISTORY
    job_spec(spec.job_template.spec, pod_spec=pod_spec)


def _daemon_set_spec(spec: objects_pb2.DaemonSetSpec, *, pod_spec: PodSpecDefaults) -> None:
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate":
        rolling = strategy.rolling_update
        if not rolling.HasField("max_unavailable"):
            rolling.max_unavailable.CopyFrom(Value(number_value=1))
        if not rolling.HasField("max_surge"):
            rolling.max_surge.CopyFrom(Value(number_value=0))
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    pod_spec(spec.template.spec)


def _stateful_set_spec(spec: objects_pb2.StatefulSetSpec, *, pod_spec: PodSpecDefaults) -> None:
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.pod_management_policy:
        spec.pod_management_policy = "OrderedReady"
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate" and not strategy.rolling_update.HasField("partition"):
        strategy.rolling_update.partition = 0
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    retention = spec.persistent_volume_claim_retention_policy
    if not retention.when_deleted:
        retention.when_deleted = "Retain"
    if not retention.when_scaled:
        retention.when_scaled = "Retain"
    for claim in spec.volume_claim_templates:
        claim_spec(claim.spec)
    pod_spec(spec.template.spec)


def claim_spec(spec: objects_pb2.PersistentVolumeClaimSpec) -> None:
    if not spec.HasField("volume_mode"):
        spec.volume_mode = "Filesystem"


def _autoscaler_spec(spec: objects_pb2.HorizontalPodAutoscalerSpec) -> None:
    """autoscaling/v2: minReplicas 1; no metrics means 80 % CPU utilization; a rule's
    selectPolicy Max."""
    if not spec.HasField("min_replicas"):
        spec.min_replicas = 1
    if not spec.metrics:
        metric = spec.metrics.add(type="Resource")
        metric.resource.name = "cpu"
        metric.resource.target.type = "Utilization"
        metric.resource.target.average_utilization = 80
    behavior = spec.behavior
    for rules in (behavior.scale_up, behavior.scale_down):
        if rules.ListFields() and not rules.select_policy:
            rules.select_policy = "Max"

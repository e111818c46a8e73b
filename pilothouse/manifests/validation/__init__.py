"""Semantic checks of objects, with Kubernetes' field paths and wording.

- `findings`: `Findings`, the problems of one object in apimachinery's message forms;
- `meta`: object metadata and label maps, for every kind;
- `workloads`: Deployments and ReplicaSets: selector and template, strategy, replica counts;
- `pods`: pod specs and their containers: ports, resources, probes;
- `dns`, `lifecycle`: a pod's names and resolver settings, its containers' preStop hooks;
- `services`: Services and EndpointSlices.

Invariants: `check(message)` returns every problem it finds as (field path, message) pairs and
never stops at the first; it expects defaults to have been applied (as the Kubernetes API server
validates after defaulting) but does not crash without them. Messages follow apimachinery's
forms: `Required value`, `Invalid value: <v>: <why>`, `Unsupported value: "<v>": supported
values: …`, `Duplicate value: "<v>"`, `Forbidden: <why>`.
"""

from __future__ import annotations

from google.protobuf.message import Message

from pilothouse.manifests import names
from pilothouse.manifests.validation import (
    autoscaling,
    batch,
    config,
    dns,
    lifecycle,
    meta,
    podconfig,
    pods,
    podsecurity,
    scheduling,
    services,
    sets,
    storage,
    volumes,
    workloads,
)
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2


def check(message: Message) -> list[tuple[str, str]]:
    """Every problem in `message`, as (field path, message) pairs, in the order found."""
    found = Findings()
    if isinstance(message, objects_pb2.Deployment):
        meta.metadata(found, message.metadata, namespaced=True)
        workloads.deployment_spec(found, message.spec)
    elif isinstance(message, objects_pb2.Pod):
        meta.metadata(found, message.metadata, namespaced=True)
        pods.pod_spec(
            found, message.spec, "spec", restart_policies=("Always", "OnFailure", "Never")
        )
    elif isinstance(message, objects_pb2.Node):
        meta.metadata(found, message.metadata, namespaced=False)
        capacity = message.status.capacity
        for key, amount in capacity.items():
            pods.quantity(found, f"status.capacity[{key}]", amount)
        for key, amount in message.status.allocatable.items():
            if capacity.get(key) != amount:  # a copy of capacity (the default) is reported once
                pods.quantity(found, f"status.allocatable[{key}]", amount)
    elif isinstance(message, objects_pb2.ReplicaSet):
        meta.metadata(found, message.metadata, namespaced=True)
        spec = message.spec
        if spec.HasField("replicas"):
            found.nonnegative("spec.replicas", spec.replicas)
        workloads.template(
            found, spec.selector, spec.template, restart_policies=("Always",), holder=spec
        )
        found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    elif isinstance(message, objects_pb2.Service):
        meta.metadata(found, message.metadata, namespaced=True)
        services.service(found, message)
    elif isinstance(message, objects_pb2.EndpointSlice):
        meta.metadata(found, message.metadata, namespaced=True)
        services.endpoint_slice(found, message)
    elif type(message) in _MORE:
        namespaced = not isinstance(message, _CLUSTER_SCOPED)
        meta.metadata(found, message.metadata, namespaced=namespaced)
        _MORE[type(message)](found, message)
    elif hasattr(message, "metadata"):
        meta.metadata(found, message.metadata, namespaced=True)
    if isinstance(message, objects_pb2.Pod):
        volumes.reserved_annotations(found, message.metadata.annotations, "metadata.annotations")
    for spec, path in _pod_specs(message):
        if path != "spec":  # a template: its annotations become its pods'
            template = path.removesuffix(".spec")
            annotations = _template_of(message).metadata.annotations
            volumes.reserved_annotations(found, annotations, f"{template}.metadata.annotations")
        extra = sets.claim_template_names(message) if isinstance(message, _STS) else ()
        volumes.pod_volumes(found, spec, path, extra=extra)
        dns.pod_dns(found, spec, path)
        podconfig.pod(found, spec, path)
        podsecurity.pod(found, spec, path)
        scheduling.pod(found, spec, path)
        grace = (
            spec.termination_grace_period_seconds
            if spec.HasField("termination_grace_period_seconds")
            else None
        )
        for i, container in enumerate(spec.containers):
            lifecycle.lifecycle(found, container, f"{path}.containers[{i}]", grace_seconds=grace)
    scheduling.unevaluated_expressions(found, message)
    return found.items


def _pod_specs(message: Message) -> list[tuple[objects_pb2.PodSpec, str]]:
    """The pod spec an object holds (a Pod's own, a workload's template), with its path."""
    if isinstance(message, objects_pb2.Pod):
        return [(message.spec, "spec")]
    if isinstance(message, objects_pb2.CronJob):
        job = message.spec.job_template.spec
        return [(job.template.spec, "spec.jobTemplate.spec.template.spec")]
    if isinstance(message, _TEMPLATED) and message.spec.HasField("template"):
        return [(message.spec.template.spec, "spec.template.spec")]
    if isinstance(
        message, objects_pb2.Deployment | objects_pb2.ReplicaSet
    ) and message.spec.HasField("template"):
        return [(message.spec.template.spec, "spec.template.spec")]
    return []


def _template_of(message: Message) -> objects_pb2.PodTemplateSpec:
    if isinstance(message, objects_pb2.CronJob):
        return message.spec.job_template.spec.template
    return message.spec.template


def _namespace(found: Findings, message: objects_pb2.Namespace) -> None:
    for error in names.dns1123_label(message.metadata.name):
        found.invalid("metadata.name", message.metadata.name, error)


_MORE = {
    objects_pb2.Job: batch.job,
    objects_pb2.CronJob: batch.cron_job,
    objects_pb2.DaemonSet: sets.daemon_set,
    objects_pb2.StatefulSet: sets.stateful_set,
    objects_pb2.ReplicationController: sets.replication_controller,
    objects_pb2.PersistentVolumeClaim: storage.claim,
    objects_pb2.PersistentVolume: storage.volume,
    objects_pb2.StorageClass: storage.storage_class,
    objects_pb2.Namespace: _namespace,
    objects_pb2.ConfigMap: config.config_map,
    objects_pb2.Secret: config.secret,
    objects_pb2.HorizontalPodAutoscaler: autoscaling.autoscaler,
}
_CLUSTER_SCOPED = (objects_pb2.Namespace, objects_pb2.PersistentVolume, objects_pb2.StorageClass)
_STS = objects_pb2.StatefulSet
_TEMPLATED = (
    objects_pb2.Job,
    objects_pb2.DaemonSet,
    objects_pb2.StatefulSet,
    objects_pb2.ReplicationController,
)

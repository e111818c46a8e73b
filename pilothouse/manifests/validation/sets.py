"""DaemonSets, StatefulSets and ReplicationControllers: selector and template, update strategy,
and a StatefulSet's service name and volume claim templates.

Rules as apps/v1 and core/v1 validation has them: the selector must select the template; the
template restarts Always; DaemonSet maxUnavailable and maxSurge are not both 0; a
StatefulSet names its governing Service (`serviceName`, required), manages pods OrderedReady or
Parallel, has a non-negative partition, and each claim template is a valid claim whose name
its pods' mounts may use as a volume.
"""

from __future__ import annotations

from pilothouse.manifests import names
from pilothouse.manifests.validation import storage
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.meta import labels
from pilothouse.manifests.validation.pods import pod_spec
from pilothouse.manifests.validation.workloads import _int_or_percent, template
from pilothouse.v1 import objects_pb2

UPDATE_STRATEGIES = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT = ("OrderedReady", "Parallel")
RETENTION = ("Delete", "Retain")


def daemon_set(found: Findings, message: objects_pb2.DaemonSet) -> None:
    spec = message.spec
    template(found, spec.selector, spec.template, restart_policies=("Always",), holder=spec)
    strategy = spec.update_strategy
    path = "spec.updateStrategy"
    if strategy.type and strategy.type not in UPDATE_STRATEGIES:
        found.unsupported(f"{path}.type", strategy.type, UPDATE_STRATEGIES)
    elif strategy.type == "RollingUpdate":
        rolling = strategy.rolling_update
        surge = _int_or_percent(found, f"{path}.rollingUpdate.maxSurge", rolling, "max_surge")
        unavailable = _int_or_percent(
            found, f"{path}.rollingUpdate.maxUnavailable", rolling, "max_unavailable"
        )
        if surge is not None and unavailable is not None and surge[0] == 0 == unavailable[0]:
            found.invalid(
                f"{path}.rollingUpdate.maxUnavailable",
                0,
                "may not be 0 when `maxSurge` is 0",
            )
    elif strategy.HasField("rolling_update"):
        found.forbidden(
            f"{path}.rollingUpdate", "may not be specified when strategy `type` is 'OnDelete'"
        )
    found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        found.nonnegative("spec.revisionHistoryLimit", spec.revision_history_limit)


def stateful_set(found: Findings, message: objects_pb2.StatefulSet) -> None:
    spec = message.spec
    if spec.HasField("replicas"):
        found.nonnegative("spec.replicas", spec.replicas)
    if not spec.service_name:
        found.required("spec.serviceName")
    else:
        for error in names.dns1123_label(spec.service_name):
            found.invalid("spec.serviceName", spec.service_name, error)
    if spec.pod_management_policy and spec.pod_management_policy not in POD_MANAGEMENT:
        found.unsupported("spec.podManagementPolicy", spec.pod_management_policy, POD_MANAGEMENT)
    strategy = spec.update_strategy
    path = "spec.updateStrategy"
    if strategy.type and strategy.type not in UPDATE_STRATEGIES:
        found.unsupported(f"{path}.type", strategy.type, UPDATE_STRATEGIES)
    elif strategy.type == "OnDelete" and strategy.HasField("rolling_update"):
        found.forbidden(f"{path}.rollingUpdate", "only allowed for updateStrategy 'RollingUpdate'")
    elif strategy.rolling_update.HasField("partition"):
        found.nonnegative(f"{path}.rollingUpdate.partition", strategy.rolling_update.partition)
    retention = spec.persistent_volume_claim_retention_policy
    for field, json in (("when_deleted", "whenDeleted"), ("when_scaled", "whenScaled")):
        value = getattr(retention, field)
        if value and value not in RETENTION:
            found.unsupported(f"spec.persistentVolumeClaimRetentionPolicy.{json}", value, RETENTION)
    found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        found.nonnegative("spec.revisionHistoryLimit", spec.revision_history_limit)
    claims: set[str] = set()
    for i, claim in enumerate(spec.volume_claim_templates):
        where = f"spec.volumeClaimTemplates[{i}]"
        if not claim.metadata.name:
            found.required(f"{where}.metadata.name")
        else:
            for error in names.dns1123_label(claim.metadata.name):
                found.invalid(f"{where}.metadata.name", claim.metadata.name, error)
            if claim.metadata.name in claims:
                found.duplicate(f"{where}.metadata.name", claim.metadata.name)
            claims.add(claim.metadata.name)
        storage.claim_spec(found, claim.spec, f"{where}.spec")
    template(found, spec.selector, spec.template, restart_policies=("Always",), holder=spec)


def claim_template_names(message: objects_pb2.StatefulSet) -> list[str]:
    return [c.metadata.name for c in message.spec.volume_claim_templates if c.metadata.name]


def replication_controller(found: Findings, message: objects_pb2.ReplicationController) -> None:
    spec = message.spec
    if spec.HasField("replicas"):
        found.nonnegative("spec.replicas", spec.replicas)
    if not spec.selector:
        found.required("spec.selector")
    labels(found, "spec.selector", spec.selector)
    tmpl = spec.template
    labels(found, "spec.template.metadata.labels", tmpl.metadata.labels)
    if spec.selector and any(tmpl.metadata.labels.get(k) != v for k, v in spec.selector.items()):
        found.invalid(
            "spec.template.metadata.labels",
            dict(tmpl.metadata.labels),
            "`selector` does not match template `labels`",
        )
    if not spec.HasField("template"):
        found.required("spec.template")
    else:
        pod_spec(found, tmpl.spec, "spec.template.spec", restart_policies=("Always",))
    found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)

"""PersistentVolumeClaims, PersistentVolumes and StorageClasses (core/v1, storage/v1).

Rules as Kubernetes has them: a claim needs at least one access mode and a positive
`resources.requests[storage]`; a volume needs a capacity, access modes and exactly one source
(hostPath or local; a local one also needs node affinity); a class names its provisioner. A
claim naming a class that does not exist is valid: it stays Pending with an event, as in
Kubernetes (the storage controller says so).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse import quantity as quantities
from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
CLASS_RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
NODE_OPERATORS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")


def _access_modes(found: Findings, modes: Iterable[str], path: str) -> None:
    modes = list(modes)
    if not modes:
        found.required(path, "at least 1 access mode is required")
    for mode in modes:
        if mode not in ACCESS_MODES:
            found.unsupported(path, mode, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        found.forbidden(path, "may not use ReadWriteOncePod with other access modes")


def _storage(found: Findings, amounts: dict[str, str], path: str) -> None:
    amount = amounts.get("storage")
    if amount is None:
        found.required(f"{path}[storage]")
        return
    try:
        value = quantities.parse(amount)
    except quantities.QuantityError:
        found.invalid(
            f"{path}[storage]",
            amount,
            f"quantities must match the regular expression {quantities.K8S_PATTERN!r}",
        )
        return
    if value <= 0:
        found.invalid(f"{path}[storage]", amount, "must be greater than zero")


def claim_spec(found: Findings, spec: objects_pb2.PersistentVolumeClaimSpec, path: str) -> None:
    _access_modes(found, spec.access_modes, f"{path}.accessModes")
    _storage(found, dict(spec.resources.requests), f"{path}.resources.requests")
    if spec.HasField("volume_mode") and spec.volume_mode not in VOLUME_MODES:
        found.unsupported(f"{path}.volumeMode", spec.volume_mode, VOLUME_MODES)
    if spec.HasField("storage_class_name") and spec.storage_class_name:
        for error in names.dns1123_subdomain(spec.storage_class_name):
            found.invalid(f"{path}.storageClassName", spec.storage_class_name, error)


def claim(found: Findings, message: objects_pb2.PersistentVolumeClaim) -> None:
    claim_spec(found, message.spec, "spec")


def volume(found: Findings, message: objects_pb2.PersistentVolume) -> None:
    spec = message.spec
    _access_modes(found, spec.access_modes, "spec.accessModes")
    _storage(found, dict(spec.capacity), "spec.capacity")
    sources = [
        json
        for field, json in (("host_path", "hostPath"), ("local", "local"))
        if spec.HasField(field)
    ]
    if not sources:
        found.required("spec", "must specify a volume type")
    for json in sources[1:]:
        found.forbidden(f"spec.{json}", "may not specify more than 1 volume type")
    for field, json in (("host_path", "hostPath"), ("local", "local")):
        if spec.HasField(field):
            path = getattr(spec, field).path
            if not path:
                found.required(f"spec.{json}.path")
            elif not path.startswith("/"):
                found.invalid(f"spec.{json}.path", path, "must be an absolute path")
            elif ".." in path.split("/"):
                found.invalid(f"spec.{json}.path", path, "must not contain '..'")
    if spec.HasField("local") and not spec.node_affinity.HasField("required"):
        found.required("spec.nodeAffinity", "Local volume requires node affinity")
    terms = spec.node_affinity.required.node_selector_terms
    for i, term in enumerate(terms):
        for j, requirement in enumerate(term.match_expressions):
            where = f"spec.nodeAffinity.required.nodeSelectorTerms[{i}].matchExpressions[{j}]"
            if not requirement.key:
                found.required(f"{where}.key")
            if requirement.operator not in NODE_OPERATORS:
                found.unsupported(f"{where}.operator", requirement.operator, NODE_OPERATORS)
            elif requirement.operator in ("In", "NotIn") and not requirement.values:
                found.required(
                    f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                )
    policy = spec.persistent_volume_reclaim_policy
    if policy and policy not in RECLAIM_POLICIES:
        found.unsupported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES)
    if spec.HasField("volume_mode") and spec.volume_mode not in VOLUME_MODES:
        found.unsupported("spec.volumeMode", spec.volume_mode, VOLUME_MODES)


def storage_class(found: Findings, message: objects_pb2.StorageClass) -> None:
    if not message.provisioner:
        found.required("provisioner")
    elif len(message.provisioner) > 63 or names.qualified_name(message.provisioner):
        found.invalid("provisioner", message.provisioner, "must be a qualified name")
    if message.HasField("reclaim_policy") and message.reclaim_policy not in CLASS_RECLAIM_POLICIES:
        found.unsupported("reclaimPolicy", message.reclaim_policy, CLASS_RECLAIM_POLICIES)
    mode = message.volume_binding_mode
    if message.HasField("volume_binding_mode") and mode not in BINDING_MODES:
        found.unsupported("volumeBindingMode", mode, BINDING_MODES)

"""What a pod's environment and configuration volumes may refer to: its own fields and
resources (the downward API's fieldRef and resourceFieldRef) and ConfigMaps and Secrets by name.

Rules (core/v1 validation, apimachinery's wording): a fieldRef names a field the pod exposes,
in env (`FIELD_PATHS_ENV`) or in a downwardAPI volume (`FIELD_PATHS_VOLUME`, which also has
the whole label and annotation maps but no node or pod IPs), or one label or annotation by a
valid key; a resourceFieldRef a known resource (`RESOURCES`) of a container of the pod, with a
positive divisor; a ConfigMap or Secret a DNS subdomain name.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.pods import quantity
from pilothouse.v1 import objects_pb2

FIELD_PATHS_ENV = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
# In a downwardAPI volume: whole label and annotation maps too, but no node or pod IPs.
FIELD_PATHS_VOLUME = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
RESOURCES = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)


def field_ref(
    found: Findings, ref: objects_pb2.ObjectFieldSelector, path: str, allowed: Sequence[str]
) -> None:
    """A fieldRef at `path` names one of `allowed` (FIELD_PATHS_ENV or FIELD_PATHS_VOLUME)."""
    if ref.api_version and ref.api_version != "v1":
        found.unsupported(f"{path}.apiVersion", ref.api_version, ("v1",))
    if not ref.field_path:
        found.required(f"{path}.fieldPath")
        return
    base, key = _subscript(ref.field_path)
    if key is not None and base in ("metadata.labels", "metadata.annotations"):
        errors = names.qualified_name(key)
        for error in errors:
            found.invalid(f"{path}.fieldPath", ref.field_path, error)
        return
    whole_maps = ("metadata.labels", "metadata.annotations")
    if ref.field_path not in allowed or (
        allowed is FIELD_PATHS_ENV and ref.field_path in whole_maps
    ):
        supported = [p for p in allowed if allowed is not FIELD_PATHS_ENV or p not in whole_maps]
        found.unsupported(f"{path}.fieldPath", ref.field_path, supported)


def _subscript(field_path: str) -> tuple[str, str | None]:
    """("metadata.labels", "app") for "metadata.labels['app']"; (path, None) otherwise."""
    if field_path.endswith("']") and "['" in field_path:
        base, _, rest = field_path.partition("['")
        return base, rest[:-2]
    return field_path, None


def resource_ref(
    found: Findings,
    ref: objects_pb2.ResourceFieldSelector,
    path: str,
    containers: set[str],
    *,
    needs_container: bool,
) -> None:
    """A resourceFieldRef names a known resource of one of `containers` (the pod's)."""
    if not ref.container_name:
        if needs_container:
            found.required(f"{path}.containerName")
    elif ref.container_name not in containers:
        found.items.append((f"{path}.containerName", f'Not found: "{ref.container_name}"'))
    if not ref.resource:
        found.required(f"{path}.resource")
    elif ref.resource not in RESOURCES:
        found.unsupported(f"{path}.resource", ref.resource, RESOURCES)
    if ref.divisor:
        value = quantity(found, f"{path}.divisor", ref.divisor)
        if value is not None and value <= 0:
            found.invalid(f"{path}.divisor", ref.divisor, "must be greater than 0")


def config_name(found: Findings, name: str, path: str) -> None:
    """A ConfigMap's or Secret's name: required, a DNS subdomain."""
    if not name:
        found.required(path)
        return
    for error in names.dns1123_subdomain(name):
        found.invalid(path, name, error)

"""A pod spec's volumes, its containers' volume mounts, and its tolerations.

Rules (core/v1 validation): each volume has a DNS-label name, unique in the pod, and exactly
one source; a hostPath needs an absolute path, a persistentVolumeClaim a claimName; a mount
names a volume of the pod (or, in a StatefulSet, one of its claim templates: `extra`), has an
absolute mountPath unique in its container, and a relative subPath without "..". Tolerations:
operator Equal or Exists, an empty key only with Exists, no value with Exists, a known effect,
tolerationSeconds only with NoExecute. Annotations under `RESOLVED_PREFIX` are the control
plane's (where a claim's volume lives on the node) and may not be set by anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

# Written by the scheduler on a bound pod: `pilothouse.io/volume.<volume>: <node path>` (under
# "pilothouse.io/", so an apply of the pod's manifest keeps it, as it keeps controllers' notes).
RESOLVED_PREFIX = "pilothouse.io/volume."
_SOURCES = (
    ("host_path", "hostPath"),
    ("empty_dir", "emptyDir"),
    ("persistent_volume_claim", "persistentVolumeClaim"),
    ("config_map", "configMap"),
    ("secret", "secret"),
    ("downward_api", "downwardAPI"),
    ("projected", "projected"),
)
_OPERATORS = ("Equal", "Exists")
_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_HOST_PATH_TYPES = (
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
)


def pod_volumes(
    found: Findings, spec: objects_pb2.PodSpec, path: str, *, extra: Iterable[str] = ()
) -> None:
    """Volumes, mounts and tolerations of the pod spec at `path` ("spec", "spec.template.spec")."""
    known = _volumes(found, spec.volumes, f"{path}.volumes")
    known.update(extra)
    for i, container in enumerate(spec.containers):
        _mounts(found, container.volume_mounts, f"{path}.containers[{i}].volumeMounts", known)
    for i, container in enumerate(spec.init_containers):
        where = f"{path}.initContainers[{i}].volumeMounts"
        _mounts(found, container.volume_mounts, where, known)
    tolerations(found, spec.tolerations, f"{path}.tolerations")
    if spec.service_account_name:
        for error in names.dns1123_subdomain(spec.service_account_name):
            found.invalid(f"{path}.serviceAccountName", spec.service_account_name, error)


def reserved_annotations(found: Findings, annotations: Mapping[str, str], field: str) -> None:
    for key in sorted(annotations):
        if key.startswith(RESOLVED_PREFIX):
            found.forbidden(f"{field}[{key}]", "set by the control plane when the pod is bound")


def _volumes(found: Findings, volumes: Iterable[objects_pb2.Volume], path: str) -> set[str]:
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        where = f"{path}[{i}]"
        if not volume.name:
            found.required(f"{where}.name")
        else:
            for error in names.dns1123_label(volume.name):
                found.invalid(f"{where}.name", volume.name, error)
            if volume.name in seen:
                found.duplicate(f"{where}.name", volume.name)
            seen.add(volume.name)
        sources = [json for field, json in _SOURCES if volume.HasField(field)]
        if not sources:
            found.required(where, "must specify a volume type")
        for json in sources[1:]:
            found.forbidden(f"{where}.{json}", "may not specify more than 1 volume type")
        if volume.HasField("host_path"):
            host = volume.host_path
            if not host.path:
                found.required(f"{where}.hostPath.path")
            elif not host.path.startswith("/"):
                found.invalid(f"{where}.hostPath.path", host.path, "must be an absolute path")
            elif ".." in host.path.split("/"):
                found.invalid(f"{where}.hostPath.path", host.path, "must not contain '..'")
            if host.type not in _HOST_PATH_TYPES:
                found.unsupported(f"{where}.hostPath.type", host.type, _HOST_PATH_TYPES[1:])
        if volume.HasField("empty_dir"):
            medium = volume.empty_dir.medium
            if medium not in ("", "Memory"):
                found.unsupported(f"{where}.emptyDir.medium", medium, ("", "Memory"))
        if volume.HasField("persistent_volume_claim"):
            claim = volume.persistent_volume_claim.claim_name
            if not claim:
                found.required(f"{where}.persistentVolumeClaim.claimName")
            else:
                for error in names.dns1123_subdomain(claim):
                    found.invalid(f"{where}.persistentVolumeClaim.claimName", claim, error)
    return seen


def _mounts(
    found: Findings,
    mounts: Iterable[objects_pb2.VolumeMount],
    path: str,
    known: set[str],
) -> None:
    targets: set[str] = set()
    for i, mount in enumerate(mounts):
        where = f"{path}[{i}]"
        if not mount.name:
            found.required(f"{where}.name")
        elif mount.name not in known:
            found.items.append((f"{where}.name", f'Not found: "{mount.name}"'))
        if not mount.mount_path:
            found.required(f"{where}.mountPath")
        elif not mount.mount_path.startswith("/"):
            found.invalid(f"{where}.mountPath", mount.mount_path, "must be an absolute path")
        elif mount.mount_path in targets:
            found.invalid(f"{where}.mountPath", mount.mount_path, "must be unique")
        targets.add(mount.mount_path)
        if mount.sub_path:
            if mount.sub_path.startswith("/"):
                found.invalid(f"{where}.subPath", mount.sub_path, "must be a relative path")
            elif ".." in mount.sub_path.split("/"):
                found.invalid(f"{where}.subPath", mount.sub_path, "must not contain '..'")


def tolerations(found: Findings, items: Iterable[objects_pb2.Toleration], path: str) -> None:
    for i, toleration in enumerate(items):
        where = f"{path}[{i}]"
        operator = toleration.operator or "Equal"
        if toleration.key:
            for error in names.qualified_name(toleration.key):
                found.invalid(f"{where}.key", toleration.key, error)
        elif operator != "Exists":
            found.invalid(
                f"{where}.operator",
                operator,
                'operator must be Exists when `key` is empty, which means "match all values '
                'and all keys"',
            )
        if operator not in _OPERATORS:
            found.unsupported(f"{where}.operator", operator, _OPERATORS)
        elif operator == "Exists" and toleration.value:
            found.invalid(
                f"{where}.operator",
                toleration.value,
                "value must be empty when `operator` is 'Exists'",
            )
        if toleration.effect and toleration.effect not in _EFFECTS:
            found.unsupported(f"{where}.effect", toleration.effect, _EFFECTS)
        if toleration.HasField("toleration_seconds") and toleration.effect != "NoExecute":
            found.invalid(
                f"{where}.effect",
                toleration.effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            )

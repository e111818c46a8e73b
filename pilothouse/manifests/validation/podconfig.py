"""A pod's configuration: init containers and sidecars, env sources, configuration volumes.

Rules (core/v1 validation, apimachinery's wording):
- init containers are containers (name, image, ports, resources, probes), named uniquely
  among all the pod's containers; `restartPolicy` may be set only on an init container and
  only to "Always" (a sidecar); an init container that is not a sidecar may have no
  lifecycle hooks and no liveness, readiness or startup probe;
- `env[].valueFrom` names exactly one source and excludes `value`; a fieldRef names a field
  the pod exposes, a resourceFieldRef a resource of a container of the pod (`references`), a
  configMapKeyRef/secretKeyRef a name and a valid key; `envFrom[]` exactly one of
  configMapRef and secretRef, with a name;
- configMap, secret, downwardAPI and projected volumes: a name, `items` with valid keys and
  relative paths without "..", modes within 0-0777; a projected volume's sources one each;
- volume mounts: `subPath` and `subPathExpr` exclude each other; `mountPropagation` is
  "None" or "HostToContainer" ("Bidirectional" needs a privileged container: refused);
- `imagePullSecrets[].name` is required.

Whether the referenced ConfigMaps and Secrets and their keys exist is not checked here: as in
Kubernetes, that is found when the container is made (CreateContainerConfigError, an event).
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.manifests import names
from pilothouse.manifests.validation import lifecycle, references
from pilothouse.manifests.validation.config import key_errors
from pilothouse.manifests.validation.findings import Findings
from pilothouse.manifests.validation.pods import _container as container_fields
from pilothouse.v1 import objects_pb2

SIDECAR = "Always"
PROPAGATIONS = ("HostToContainer", "None")
MAX_MODE = 0o777


def pod(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    """Everything above, for the pod spec at `path`."""
    _containers(found, spec, path)
    for i, volume in enumerate(spec.volumes):
        _volume(found, volume, f"{path}.volumes[{i}]", spec)
    for i, secret in enumerate(spec.image_pull_secrets):
        if not secret.name:
            found.required(f"{path}.imagePullSecrets[{i}].name")


def all_containers(
    spec: objects_pb2.PodSpec, path: str
) -> Iterable[tuple[objects_pb2.Container, str]]:
    """Every container of the pod with its field path: init containers first."""
    for i, c in enumerate(spec.init_containers):
        yield c, f"{path}.initContainers[{i}]"
    for i, c in enumerate(spec.containers):
        yield c, f"{path}.containers[{i}]"


def _containers(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    names_seen = {c.name for c in spec.containers}
    grace = (
        spec.termination_grace_period_seconds
        if spec.HasField("termination_grace_period_seconds")
        else None
    )
    for i, init in enumerate(spec.init_containers):
        where = f"{path}.initContainers[{i}]"
        if init.name and init.name in names_seen:
            found.duplicate(f"{where}.name", init.name)
        names_seen.add(init.name)
        container_fields(found, init, where)
        if init.restart_policy and init.restart_policy != SIDECAR:
            found.unsupported(f"{where}.restartPolicy", init.restart_policy, (SIDECAR,))
        if init.restart_policy != SIDECAR:
            for field, json_name in (
                ("lifecycle", "lifecycle"),
                ("liveness_probe", "livenessProbe"),
                ("readiness_probe", "readinessProbe"),
                ("startup_probe", "startupProbe"),
            ):
                if init.HasField(field):
                    found.forbidden(
                        f"{where}.{json_name}",
                        "may not be set for init containers without restartPolicy=Always",
                    )
        else:
            lifecycle.lifecycle(found, init, where, grace_seconds=grace)
    for i, main in enumerate(spec.containers):
        if main.restart_policy:
            found.forbidden(
                f"{path}.containers[{i}].restartPolicy", "may not be set for non-init containers"
            )
    container_names = {c.name for c in (*spec.init_containers, *spec.containers)}
    for container, where in all_containers(spec, path):
        _env(found, container, where, container_names)
        for j, mount in enumerate(container.volume_mounts):
            _mount(found, mount, f"{where}.volumeMounts[{j}]")


def _env(
    found: Findings, container: objects_pb2.Container, path: str, containers: set[str]
) -> None:
    for i, env in enumerate(container.env):
        if not env.HasField("value_from"):
            continue
        where = f"{path}.env[{i}].valueFrom"
        source = env.value_from
        if env.value:
            found.invalid(where, "", "may not be specified when `value` is not empty")
        chosen = [
            json_name
            for field, json_name in (
                ("field_ref", "fieldRef"),
                ("resource_field_ref", "resourceFieldRef"),
                ("config_map_key_ref", "configMapKeyRef"),
                ("secret_key_ref", "secretKeyRef"),
            )
            if source.HasField(field)
        ]
        if not chosen:
            found.invalid(
                where,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                "`secretKeyRef`",
            )
        elif len(chosen) > 1:
            found.invalid(where, "", "may not have more than one field specified at a time")
        if source.HasField("field_ref"):
            references.field_ref(
                found, source.field_ref, f"{where}.fieldRef", references.FIELD_PATHS_ENV
            )
        if source.HasField("resource_field_ref"):
            references.resource_ref(
                found,
                source.resource_field_ref,
                f"{where}.resourceFieldRef",
                containers,
                needs_container=False,
            )
        for field, json_name in (
            ("config_map_key_ref", "configMapKeyRef"),
            ("secret_key_ref", "secretKeyRef"),
        ):
            if source.HasField(field):
                ref = getattr(source, field)
                references.config_name(found, ref.name, f"{where}.{json_name}.name")
                if not ref.key:
                    found.required(f"{where}.{json_name}.key")
                for error in key_errors(ref.key) if ref.key else ():
                    found.invalid(f"{where}.{json_name}.key", ref.key, error)
    for i, source in enumerate(container.env_from):
        where = f"{path}.envFrom[{i}]"
        refs = [
            (json_name, getattr(source, field))
            for field, json_name in (
                ("config_map_ref", "configMapRef"),
                ("secret_ref", "secretRef"),
            )
            if source.HasField(field)
        ]
        if not refs:
            found.invalid(where, "", "must specify one of: `configMapRef` or `secretRef`")
        elif len(refs) > 1:
            found.invalid(where, "", "may not have more than one field specified at a time")
        for json_name, ref in refs:
            references.config_name(found, ref.name, f"{where}.{json_name}.name")
        if source.prefix:
            for error in names.env_var_name(source.prefix):
                found.invalid(f"{where}.prefix", source.prefix, error)


def _volume(
    found: Findings, volume: objects_pb2.Volume, path: str, spec: objects_pb2.PodSpec
) -> None:
    containers = {c.name for c in (*spec.init_containers, *spec.containers)}
    if volume.HasField("config_map"):
        source = volume.config_map
        references.config_name(found, source.name, f"{path}.configMap.name")
        _items(found, source.items, f"{path}.configMap.items")
        _mode(found, source, "default_mode", f"{path}.configMap.defaultMode")
    if volume.HasField("secret"):
        source = volume.secret
        references.config_name(found, source.secret_name, f"{path}.secret.secretName")
        _items(found, source.items, f"{path}.secret.items")
        _mode(found, source, "default_mode", f"{path}.secret.defaultMode")
    if volume.HasField("downward_api"):
        _mode(found, volume.downward_api, "default_mode", f"{path}.downwardAPI.defaultMode")
        _downward(found, volume.downward_api.items, f"{path}.downwardAPI.items", containers)
    if volume.HasField("projected"):
        projected = volume.projected
        _mode(found, projected, "default_mode", f"{path}.projected.defaultMode")
        paths: set[str] = set()
        for i, source in enumerate(projected.sources):
            where = f"{path}.projected.sources[{i}]"
            kinds = [
                json_name
                for field, json_name in (
                    ("secret", "secret"),
                    ("config_map", "configMap"),
                    ("downward_api", "downwardAPI"),
                )
                if source.HasField(field)
            ]
            if not kinds:
                found.required(where, "must specify exactly 1 of secret, configMap, downwardAPI")
            for extra in kinds[1:]:
                found.forbidden(f"{where}.{extra}", "may not specify more than 1 volume type")
            for field, json_name in (("secret", "secret"), ("config_map", "configMap")):
                if source.HasField(field):
                    ref = getattr(source, field)
                    references.config_name(found, ref.name, f"{where}.{json_name}.name")
                    _items(found, ref.items, f"{where}.{json_name}.items", paths=paths)
            if source.HasField("downward_api"):
                _downward(
                    found,
                    source.downward_api.items,
                    f"{where}.downwardAPI.items",
                    containers,
                    paths=paths,
                )


def _items(
    found: Findings,
    items: Iterable[objects_pb2.KeyToPath],
    path: str,
    *,
    paths: set[str] | None = None,
) -> None:
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not item.key:
            found.required(f"{where}.key")
        for error in key_errors(item.key) if item.key else ():
            found.invalid(f"{where}.key", item.key, error)
        _file_path(found, item.path, f"{where}.path", paths)
        _mode(found, item, "mode", f"{where}.mode")


def _downward(
    found: Findings,
    items: Iterable[objects_pb2.DownwardAPIVolumeFile],
    path: str,
    containers: set[str],
    *,
    paths: set[str] | None = None,
) -> None:
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        _file_path(found, item.path, f"{where}.path", paths)
        _mode(found, item, "mode", f"{where}.mode")
        has_field, has_resource = item.HasField("field_ref"), item.HasField("resource_field_ref")
        if has_field == has_resource:
            found.invalid(
                where,
                "",
                "fieldRef and resourceFieldRef can not be specified simultaneously"
                if has_field
                else "must specify one of: `fieldRef` or `resourceFieldRef`",
            )
        if has_field:
            references.field_ref(
                found, item.field_ref, f"{where}.fieldRef", references.FIELD_PATHS_VOLUME
            )
        if has_resource:
            references.resource_ref(
                found,
                item.resource_field_ref,
                f"{where}.resourceFieldRef",
                containers,
                needs_container=True,
            )


def _file_path(found: Findings, file: str, field: str, seen: set[str] | None) -> None:
    if not file:
        found.required(field)
        return
    if file.startswith("/"):
        found.invalid(field, file, "must be a relative path")
    elif ".." in file.split("/"):
        found.invalid(field, file, "must not contain '..'")
    elif file.startswith(".."):
        found.invalid(field, file, "must not start with '..'")
    if seen is not None:
        if file in seen:
            found.invalid(field, file, "conflicting duplicate paths")
        seen.add(file)


def _mode(found: Findings, holder: object, field: str, path: str) -> None:
    if not holder.HasField(field):  # type: ignore[attr-defined]
        return
    mode = getattr(holder, field)
    if not 0 <= mode <= MAX_MODE:
        found.invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")


def _mount(found: Findings, mount: objects_pb2.VolumeMount, path: str) -> None:
    if mount.sub_path and mount.sub_path_expr:
        found.invalid(
            f"{path}.subPathExpr",
            mount.sub_path_expr,
            "subPathExpr and subPath are mutually exclusive",
        )
    if mount.sub_path_expr:
        expr = mount.sub_path_expr
        if expr.startswith("/"):
            found.invalid(f"{path}.subPathExpr", expr, "must be a relative path")
        elif ".." in expr.split("/"):
            found.invalid(f"{path}.subPathExpr", expr, "must not contain '..'")
    if mount.mount_propagation == "Bidirectional":
        found.forbidden(
            f"{path}.mountPropagation",
            "Bidirectional mount propagation is available only to privileged containers, "
            "which this cluster does not run; use None or HostToContainer",
        )
    elif mount.mount_propagation and mount.mount_propagation not in PROPAGATIONS:
        found.unsupported(
            f"{path}.mountPropagation", mount.mount_propagation, (*PROPAGATIONS, "Bidirectional")
        )

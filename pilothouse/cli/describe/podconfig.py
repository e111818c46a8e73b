"""The configuration parts of `describe pod` (and of pod templates), in kubectl's words, and
`describe configmap` / `describe secret`.

- a container's environment: `NAME: value`, `<set to the key 'k' of config map 'cfg'>`,
  `<set to the key 'k' in secret 's'>`, `(v1:metadata.name)`; its `envFrom` sources; its mounts
  (`/etc/app from conf (ro)`, `path="key"` for a subPath);
- the pod's volumes, each with its type line as kubectl prints it;
- the service account, saying that no token is mounted (Pilothouse issues none yet);
- a Secret shows each key's size only, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.cli.sheet import NONE, Sheet
from pilothouse.v1 import objects_pb2 as o

NO_TOKEN = "(no token mounted: Pilothouse issues no service account tokens yet)"


def environment(c: o.Container) -> str:
    lines = []
    for e in c.env:
        if not e.HasField("value_from"):
            lines.append(f"{e.name}: {e.value}")
            continue
        ref = e.value_from
        if ref.HasField("config_map_key_ref"):
            key = ref.config_map_key_ref
            lines.append(
                f"{e.name}: <set to the key '{key.key}' of config map '{key.name}'>  "
                f"Optional: {_bool(key.optional)}"
            )
        elif ref.HasField("secret_key_ref"):
            key = ref.secret_key_ref
            lines.append(
                f"{e.name}: <set to the key '{key.key}' in secret '{key.name}'>  "
                f"Optional: {_bool(key.optional)}"
            )
        elif ref.HasField("field_ref"):
            field = ref.field_ref
            lines.append(f"{e.name}:  ({field.api_version or 'v1'}:{field.field_path})")
        elif ref.HasField("resource_field_ref"):
            lines.append(f"{e.name}:  ({ref.resource_field_ref.resource})")
    return "\n".join(lines) or NONE


def env_from(c: o.Container) -> str:
    lines = []
    for source in c.env_from:
        if source.HasField("config_map_ref"):
            ref, kind = source.config_map_ref, "ConfigMap"
        else:
            ref, kind = source.secret_ref, "Secret"
        prefix = f" with prefix '{source.prefix}'" if source.prefix else ""
        lines.append(f"{ref.name}  {kind}{prefix}  Optional: {_bool(ref.optional)}")
    return "\n".join(lines)


def mounts(c: o.Container) -> str:
    lines = []
    for m in c.volume_mounts:
        flags = ["ro" if m.read_only else "rw"]
        if m.sub_path or m.sub_path_expr:
            flags.append(f'path="{m.sub_path or m.sub_path_expr}"')
        lines.append(f"{m.mount_path} from {m.name} ({','.join(flags)})")
    return "\n".join(lines) or NONE


def volumes(sheet: Sheet, spec: o.PodSpec, *, level: int = 0) -> None:
    if not spec.volumes:
        sheet.field("Volumes", NONE, level=level)
        return
    sheet.heading("Volumes:", level=level)
    for v in spec.volumes:
        sheet.heading(f" {v.name}:", level=level)
        for name, value in _volume_fields(v):
            sheet.field(name, value, level=level + 1)


def _volume_fields(v: o.Volume) -> Iterable[tuple[str, str]]:
    if v.HasField("empty_dir"):
        yield "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)"
        yield "Medium", v.empty_dir.medium
        yield "SizeLimit", v.empty_dir.size_limit or "<unset>"
    elif v.HasField("host_path"):
        yield "Type", "HostPath (bare host directory volume)"
        yield "Path", v.host_path.path
        yield "HostPathType", v.host_path.type
    elif v.HasField("config_map"):
        yield "Type", "ConfigMap (a volume populated by a ConfigMap)"
        yield "Name", v.config_map.name
        yield "Optional", _bool(v.config_map.optional)
    elif v.HasField("secret"):
        yield "Type", "Secret (a volume populated by a Secret)"
        yield "SecretName", v.secret.secret_name
        yield "Optional", _bool(v.secret.optional)
    elif v.HasField("downward_api"):
        yield "Type", "DownwardAPI (a volume populated by information about the pod)"
        yield (
            "Items",
            "\n".join(
                f"{i.field_ref.field_path or i.resource_field_ref.resource} -> {i.path}"
                for i in v.downward_api.items
            ),
        )
    elif v.HasField("projected"):
        yield "Type", "Projected (a volume that contains injected data from multiple sources)"
        for s in v.projected.sources:
            if s.HasField("config_map"):
                yield "ConfigMapName", s.config_map.name
            if s.HasField("secret"):
                yield "SecretName", s.secret.name
            if s.HasField("downward_api"):
                yield "DownwardAPI", "true"
    elif v.HasField("persistent_volume_claim"):
        yield (
            "Type",
            "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
        )
        yield "ClaimName", v.persistent_volume_claim.claim_name
        yield "ReadOnly", _bool(v.persistent_volume_claim.read_only)


def service_account(sheet: Sheet, spec: o.PodSpec) -> None:
    name = spec.service_account_name or "default"
    sheet.field("Service Account", f"{name}  {NO_TOKEN}")


def scheduling(sheet: Sheet, spec: o.PodSpec) -> None:
    """Priority class and tolerations, where a pod states them."""
    if spec.priority_class_name:
        sheet.field("Priority Class Name", spec.priority_class_name)
    if spec.tolerations:
        lines = []
        for t in spec.tolerations:
            what = t.key or "<all>"
            if t.operator == "Exists":
                what = f"{what} op=Exists" if t.key else "op=Exists"
            elif t.value:
                what = f"{what}={t.value}"
            if t.effect:
                what += f":{t.effect}"
            if t.HasField("toleration_seconds"):
                what += f" for {t.toleration_seconds}s"
            lines.append(what)
        sheet.field("Tolerations", "\n".join(lines))


def config_map(sheet: Sheet, cm: o.ConfigMap) -> None:
    sheet.heading("Data")
    sheet.heading("====")
    for key in sorted(cm.data):
        sheet.heading(f"{key}:")
        sheet.heading("----")
        sheet.heading(cm.data[key])
    sheet.heading("")
    sheet.heading("BinaryData")
    sheet.heading("====")
    for key in sorted(cm.binary_data):
        sheet.heading(f"{key}: {len(cm.binary_data[key])} bytes")


def secret(sheet: Sheet, s: o.Secret) -> None:
    sheet.field("Type", s.type)
    sheet.heading("Data")
    sheet.heading("====")
    for key in sorted(s.data):
        sheet.field(key, f"{len(s.data[key])} bytes")


def _bool(value: bool) -> str:
    return "true" if value else "false"

"""The files of configMap, secret, downwardAPI and projected volumes (pure).

Rules (the kubelet's volume plugins):
- every key of the object as a file of its name, or with `items` only those keys at their
  paths; mode: the item's, else the volume's defaultMode (0644 unless set);
- a missing object or key fails the mount with Kubernetes' message (`configmap "x" not
  found`, `configmap references non-existent config key: k`), unless `optional`: then the
  source contributes no file;
- downwardAPI files hold the pod's fields and containers' resources (`fields`);
- a projected volume merges its sources into one directory (one defaultMode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodeagent.pods.configs import ConfigError, Configs
from nodeagent.pods.fields import PodPlace, field_value, resource_value
from pilothouse.v1 import objects_pb2

DEFAULT_MODE = 0o644


class PayloadError(Exception):
    """A volume's files cannot be made (missing object or key); the kubelet's words."""


@dataclass(frozen=True, slots=True)
class File:
    data: bytes
    mode: int = DEFAULT_MODE


Payload = dict[str, File]  # relative path -> file


def payload(
    pod: objects_pb2.Pod, volume: objects_pb2.Volume, configs: Configs, place: PodPlace
) -> Payload:
    """The files of `volume` (one of the four kinds above)."""
    namespace = pod.metadata.namespace or "default"
    if volume.HasField("config_map"):
        source = volume.config_map
        mode = _mode(source, "default_mode")
        return _keys(
            _config_map(configs, namespace, source.name, optional=source.optional),
            source.items,
            mode,
            missing="configmap references non-existent config key",
            optional=source.optional,
        )
    if volume.HasField("secret"):
        source = volume.secret
        mode = _mode(source, "default_mode")
        return _keys(
            _secret(configs, namespace, source.secret_name, optional=source.optional),
            source.items,
            mode,
            missing="references non-existent secret key",
            optional=source.optional,
        )
    if volume.HasField("downward_api"):
        mode = _mode(volume.downward_api, "default_mode")
        return _downward(pod, volume.downward_api.items, mode, place)
    if volume.HasField("projected"):
        return _projected(pod, volume.projected, configs, place, namespace)
    raise ValueError(f'volume "{volume.name}" has no file source')


def is_payload(volume: objects_pb2.Volume) -> bool:
    return any(volume.HasField(f) for f in ("config_map", "secret", "downward_api", "projected"))


def uses_secrets(volume: objects_pb2.Volume) -> bool:
    return volume.HasField("secret") or any(s.HasField("secret") for s in volume.projected.sources)


def _mode(holder: object, field: str) -> int:
    return getattr(holder, field) if holder.HasField(field) else DEFAULT_MODE  # type: ignore[attr-defined]


def _config_map(
    configs: Configs, namespace: str, name: str, *, optional: bool
) -> Mapping[str, bytes] | None:
    try:
        return configs.config_map_data(namespace, name)
    except ConfigError as exc:
        if optional:
            return None
        raise PayloadError(str(exc)) from None


def _secret(
    configs: Configs, namespace: str, name: str, *, optional: bool
) -> Mapping[str, bytes] | None:
    try:
        return configs.secret_data(namespace, name)
    except ConfigError as exc:
        if optional:
            return None
        raise PayloadError(str(exc)) from None


def _keys(
    data: Mapping[str, bytes] | None,
    items: Iterable[objects_pb2.KeyToPath],
    mode: int,
    *,
    missing: str,
    optional: bool,
) -> Payload:
    if data is None:
        return {}
    items = list(items)
    if not items:
        return {key: File(value, mode) for key, value in data.items()}
    out: Payload = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise PayloadError(f"{missing}: {item.key}")
        out[item.path] = File(data[item.key], item.mode if item.HasField("mode") else mode)
    return out


def _downward(
    pod: objects_pb2.Pod,
    items: Iterable[objects_pb2.DownwardAPIVolumeFile],
    mode: int,
    place: PodPlace,
) -> Payload:
    out: Payload = {}
    for item in items:
        try:
            if item.HasField("field_ref"):
                text = field_value(pod, item.field_ref.field_path, place)
            else:
                text = resource_value(pod, item.resource_field_ref, default_container="")
        except ValueError as exc:
            raise PayloadError(str(exc)) from None
        out[item.path] = File(text.encode(), item.mode if item.HasField("mode") else mode)
    return out


def _projected(
    pod: objects_pb2.Pod,
    projected: objects_pb2.ProjectedVolumeSource,
    configs: Configs,
    place: PodPlace,
    namespace: str,
) -> Payload:
    mode = _mode(projected, "default_mode")
    out: Payload = {}
    for source in projected.sources:
        if source.HasField("config_map"):
            ref = source.config_map
            out.update(
                _keys(
                    _config_map(configs, namespace, ref.name, optional=ref.optional),
                    ref.items,
                    mode,
                    missing="configmap references non-existent config key",
                    optional=ref.optional,
                )
            )
        if source.HasField("secret"):
            ref = source.secret
            out.update(
                _keys(
                    _secret(configs, namespace, ref.name, optional=ref.optional),
                    ref.items,
                    mode,
                    missing="references non-existent secret key",
                    optional=ref.optional,
                )
            )
        if source.HasField("downward_api"):
            out.update(_downward(pod, source.downward_api.items, mode, place))
    return out

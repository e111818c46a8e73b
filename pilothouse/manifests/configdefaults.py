"""Kubernetes' defaults for configuration (issue 14): ConfigMaps, Secrets, and the parts of a
pod spec that use them (volumes, env sources, init containers, the service account name).

Invariants: as in `defaults` (whose `set_defaults` and pod-spec defaults call in here), only
unset fields are filled, so applying twice changes nothing, and nothing is rejected. Values
are core/v1's own:
- Secret: `type` Opaque; `stringData` is merged into `data` (a later stringData key wins, as
  the API server does) and cleared, so it is never stored or shown;
- configMap, secret, downwardAPI and projected volumes: `defaultMode` 0644 (420);
- fieldRef: `apiVersion` v1;
- `serviceAccount` (deprecated) and `serviceAccountName` are kept equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pilothouse.v1 import objects_pb2

DEFAULT_MODE = 0o644
DEFAULT_SECRET_TYPE = "Opaque"

ContainerDefaults = Callable[[objects_pb2.Container], None]


def secret(message: objects_pb2.Secret) -> None:
    if not message.type:
        message.type = DEFAULT_SECRET_TYPE
    for key, value in message.string_data.items():
        message.data[key] = value.encode()
    message.ClearField("string_data")


def pod_spec(spec: objects_pb2.PodSpec, *, container: ContainerDefaults) -> None:
    """The configuration parts of a pod spec; `container` defaults one container (the same
    function the regular containers get, applied here to the init containers)."""
    for init in spec.init_containers:
        container(init)
    if spec.service_account and not spec.service_account_name:
        spec.service_account_name = spec.service_account
    elif spec.service_account_name and not spec.service_account:
        spec.service_account = spec.service_account_name
    for volume in spec.volumes:
        _volume(volume)
    for each in (*spec.init_containers, *spec.containers):
        for env in each.env:
            if env.value_from.HasField("field_ref") and not env.value_from.field_ref.api_version:
                env.value_from.field_ref.api_version = "v1"


def _volume(volume: objects_pb2.Volume) -> None:
    if volume.HasField("config_map") and not volume.config_map.HasField("default_mode"):
        volume.config_map.default_mode = DEFAULT_MODE
    if volume.HasField("secret") and not volume.secret.HasField("default_mode"):
        volume.secret.default_mode = DEFAULT_MODE
    if volume.HasField("downward_api"):
        if not volume.downward_api.HasField("default_mode"):
            volume.downward_api.default_mode = DEFAULT_MODE
        _field_refs(volume.downward_api.items)
    if volume.HasField("projected"):
        if not volume.projected.HasField("default_mode"):
            volume.projected.default_mode = DEFAULT_MODE
        for source in volume.projected.sources:
            if source.HasField("downward_api"):
                _field_refs(source.downward_api.items)


def _field_refs(items: Iterable[objects_pb2.DownwardAPIVolumeFile]) -> None:
    for item in items:
        if item.HasField("field_ref") and not item.field_ref.api_version:
            item.field_ref.api_version = "v1"

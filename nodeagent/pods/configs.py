"""The ConfigMaps and Secrets this node was last pushed: what its pods' volumes and env read.

Vocabulary: a *snapshot* (`Configs`) is one push's ConfigMaps and Secrets by namespace and
name; `version` grows with every push that changed anything, so a pod's volumes know when to
look again; version 0 means nothing was pushed since the agent started (a re-adopted pod's
volumes keep their files until the first push).

Invariants:
- Only in memory: a Secret is never written to the agent's disk (the desired pod set on disk
  holds references, not values). After an agent restart the snapshot is empty until the first
  push; running containers keep their files meanwhile, and a container that needs a value
  waits (CreateContainerConfigError, retried) until the push brings it.
- Lookups say why nothing was found in Kubernetes' words (`configmap "x" not found`,
  `couldn't find key k in ConfigMap ns/x`), so an event shows what the kubelet would say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pilothouse.v1 import objects_pb2


class ConfigError(Exception):
    """A ConfigMap, Secret or key a pod needs is not there (the message says which)."""


@dataclass(frozen=True, slots=True)
class Configs:
    """One push's ConfigMaps and Secrets, by (namespace, name)."""

    config_maps: dict[tuple[str, str], objects_pb2.ConfigMap] = field(default_factory=dict)
    secrets: dict[tuple[str, str], objects_pb2.Secret] = field(default_factory=dict)
    version: int = 0

    @classmethod
    def of(
        cls,
        config_maps: Iterable[objects_pb2.ConfigMap],
        secrets: Iterable[objects_pb2.Secret],
        *,
        version: int = 0,
    ) -> Configs:
        return cls(
            config_maps={_ref(c): c for c in config_maps},
            secrets={_ref(s): s for s in secrets},
            version=version,
        )

    def same_objects(self, other: Configs) -> bool:
        return self.config_maps == other.config_maps and self.secrets == other.secrets

    def config_map(self, namespace: str, name: str) -> objects_pb2.ConfigMap:
        found = self.config_maps.get((namespace, name))
        if found is None:
            raise ConfigError(f'configmap "{name}" not found')
        return found

    def secret(self, namespace: str, name: str) -> objects_pb2.Secret:
        found = self.secrets.get((namespace, name))
        if found is None:
            raise ConfigError(f'secret "{name}" not found')
        return found

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """Every key of a ConfigMap (data and binaryData) as bytes."""
        found = self.config_map(namespace, name)
        data = {k: v.encode() for k, v in found.data.items()}
        data.update(found.binary_data)
        return data

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        return dict(self.secret(namespace, name).data)

    def config_map_key(self, namespace: str, name: str, key: str) -> bytes:
        data = self.config_map_data(namespace, name)
        if key not in data:
            raise ConfigError(f"couldn't find key {key} in ConfigMap {namespace}/{name}")
        return data[key]

    def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        data = self.secret_data(namespace, name)
        if key not in data:
            raise ConfigError(f"couldn't find key {key} in Secret {namespace}/{name}")
        return data[key]


def _ref(obj: objects_pb2.ConfigMap | objects_pb2.Secret) -> tuple[str, str]:
    return obj.metadata.namespace or "default", obj.metadata.name

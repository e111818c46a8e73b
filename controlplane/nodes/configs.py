"""What each node's agent is told of ConfigMaps and Secrets: those its own pods use, no others.

A pod uses a ConfigMap or Secret of its namespace through a `configMap`/`secret` volume (or a
projected volume's source), an env `valueFrom` configMapKeyRef/secretKeyRef, an `envFrom`
source, or an `imagePullSecrets` entry. `NodeConfig.of(NodeConfig.refs_of(pods), view)` is
the set a node's push carries, read from two informers (`ConfigView`), and
`ConfigView.on_change` tells the node sync when one of them changed (it pushes again where the
set differs).

Invariants:
- A Secret reaches a node only while a pod bound there references it (the Secrets contract:
  encrypted at rest, pushed only where used, written on nodes only to memory-backed files);
- what is pushed carries no resourceVersion, so a rewrite that changes nothing (a key
  rotation re-sealing every Secret) is not a change to push;
- a reference to an object that does not exist pushes nothing: the agent shows the pod's
  CreateContainerConfigError (or mounts nothing, for an `optional` one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from controlplane.cache.informer import Informer, Notice
from pilothouse.v1 import objects_pb2

Ref = tuple[str, str]  # (namespace, name)
UsedRefs = tuple[tuple[Ref, ...], tuple[Ref, ...]]  # the (ConfigMaps, Secrets) pods use, sorted
_Config = TypeVar("_Config", objects_pb2.ConfigMap, objects_pb2.Secret)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The ConfigMaps and Secrets of one push, sorted by namespace and name."""

    config_maps: tuple[objects_pb2.ConfigMap, ...] = ()
    secrets: tuple[objects_pb2.Secret, ...] = ()

    @staticmethod
    def refs_of(pods: Iterable[objects_pb2.Pod]) -> UsedRefs:
        """What `pods` use, sorted (a push keeps it while its pods do not change)."""
        maps: set[Ref] = set()
        secrets: set[Ref] = set()
        for pod in pods:
            pod_maps, pod_secrets = references(pod)
            maps |= pod_maps
            secrets |= pod_secrets
        return tuple(sorted(maps)), tuple(sorted(secrets))

    @classmethod
    def of(cls, refs: UsedRefs, view: ConfigView | None) -> NodeConfig:
        """The objects `refs` name, as `view` holds them now."""
        if view is None:
            return cls()
        maps, secrets = refs
        return cls(config_maps=tuple(view.config_maps(maps)), secrets=tuple(view.secrets(secrets)))


def references(pod: objects_pb2.Pod) -> tuple[set[Ref], set[Ref]]:
    """The (ConfigMaps, Secrets) `pod` uses, as (namespace, name)."""
    namespace = pod.metadata.namespace or "default"
    maps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.spec
    for volume in spec.volumes:
        if volume.HasField("config_map"):
            maps.add(volume.config_map.name)
        if volume.HasField("secret"):
            secrets.add(volume.secret.secret_name)
        for source in volume.projected.sources:
            if source.HasField("config_map"):
                maps.add(source.config_map.name)
            if source.HasField("secret"):
                secrets.add(source.secret.name)
    for container in _containers(spec):
        for env in container.env:
            ref = env.value_from
            if ref.HasField("config_map_key_ref"):
                maps.add(ref.config_map_key_ref.name)
            if ref.HasField("secret_key_ref"):
                secrets.add(ref.secret_key_ref.name)
        for source in container.env_from:
            if source.HasField("config_map_ref"):
                maps.add(source.config_map_ref.name)
            if source.HasField("secret_ref"):
                secrets.add(source.secret_ref.name)
    secrets.update(s.name for s in spec.image_pull_secrets)
    return (
        {(namespace, n) for n in maps if n},
        {(namespace, n) for n in secrets if n},
    )


def _containers(spec: objects_pb2.PodSpec) -> Iterator[objects_pb2.Container]:
    yield from spec.init_containers
    yield from spec.containers


class ConfigView:
    """Pushed copies of ConfigMaps and Secrets from their informers (which must also run)."""

    def __init__(
        self,
        *,
        config_maps: Informer,
        secrets: Informer,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._maps = config_maps
        self._secrets = secrets
        self.on_change = on_change
        config_maps.add_handler(self._changed)
        secrets.add_handler(self._changed)

    async def wait_synced(self) -> None:
        await self._maps.wait_synced()
        await self._secrets.wait_synced()

    def config_maps(self, refs: Iterable[Ref]) -> Iterator[objects_pb2.ConfigMap]:
        for namespace, name in refs:
            found = self._maps.get(namespace, name)
            if found is not None:
                yield _pushed(found)

    def secrets(self, refs: Iterable[Ref]) -> Iterator[objects_pb2.Secret]:
        for namespace, name in refs:
            found = self._secrets.get(namespace, name)
            if found is not None:
                yield _pushed(found)

    def _changed(self, notice: Notice) -> None:
        if self.on_change is not None:
            self.on_change()


def _pushed(obj: _Config) -> _Config:
    copy = type(obj)()
    copy.CopyFrom(obj)
    copy.metadata.resource_version = ""
    return copy

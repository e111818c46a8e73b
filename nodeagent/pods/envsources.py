"""A container's environment from its sources: `envFrom`, then `env` (values and `valueFrom`).

Rules (the kubelet's `makeEnvironmentVariables`):
- `envFrom` entries in order, each key as `prefix + key`; a later entry overrides an earlier
  one; keys that are not valid variable names are skipped (and reported, for an event);
- then `env` in order, overriding: a `value` (with `$(VAR)` expanded by the caller), or a
  `valueFrom` (a ConfigMap or Secret key, a pod field, a container resource);
- a missing ConfigMap, Secret or key fails the container's start with Kubernetes' message
  (`CreateContainerConfigError`: `configmap "x" not found`, `couldn't find key k in Secret
  ns/s`) unless its reference is `optional`, in which case the variable (or source) is left
  out;
- values are read when the container starts and never change while it runs.

Invariant: a value read from a Secret is never part of a message; `ResolvedEnv.secret_names`
lists the variables that hold one, so the runtime keeps them off disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.pods.configs import ConfigError, Configs
from nodeagent.pods.fields import PodPlace, field_value, resource_value
from pilothouse.manifests import names
from pilothouse.v1 import objects_pb2


class EnvError(Exception):
    """The container cannot start: a value it needs is missing (CreateContainerConfigError)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where one variable's value came from: None for a plain `value` (to be expanded)."""

    value: str
    secret: bool = False
    literal: bool = False  # from valueFrom/envFrom: not subject to $(VAR) expansion


@dataclass(frozen=True, slots=True)
class ResolvedEnv:
    # name -> source, in the order the kubelet applies them (later wins)
    items: list[tuple[str, Source]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # envFrom keys that are no valid names


def resolve(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    configs: Configs,
    place: PodPlace,
) -> ResolvedEnv:
    namespace = pod.metadata.namespace or "default"
    out = ResolvedEnv()
    for source in container.env_from:
        try:
            data, secret = _env_from(source, namespace, configs)
        except ConfigError as exc:
            raise EnvError(str(exc)) from None
        for key in sorted(data):
            name = source.prefix + key
            if names.env_var_name(name):
                out.skipped.append(name)
                continue
            value = data[key].decode("utf-8", errors="replace")
            out.items.append((name, Source(value, secret=secret, literal=True)))
    for var in container.env:
        if not var.HasField("value_from"):
            out.items.append((var.name, Source(var.value)))
            continue
        try:
            found = _value_from(pod, container, var.value_from, configs, place, namespace)
        except ConfigError as exc:
            raise EnvError(str(exc)) from None
        except ValueError as exc:
            raise EnvError(f'env "{var.name}": {exc}') from None
        if found is not None:
            out.items.append((var.name, found))
    return out


def _env_from(
    source: objects_pb2.EnvFromSource, namespace: str, configs: Configs
) -> tuple[dict[str, bytes], bool]:
    if source.HasField("config_map_ref"):
        ref = source.config_map_ref
        try:
            return configs.config_map_data(namespace, ref.name), False
        except ConfigError:
            if ref.optional:
                return {}, False
            raise
    if source.HasField("secret_ref"):
        ref = source.secret_ref
        try:
            return configs.secret_data(namespace, ref.name), True
        except ConfigError:
            if ref.optional:
                return {}, True
            raise
    return {}, False


def _value_from(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    ref: objects_pb2.EnvVarSource,
    configs: Configs,
    place: PodPlace,
    namespace: str,
) -> Source | None:
    if ref.HasField("config_map_key_ref"):
        key = ref.config_map_key_ref
        try:
            value = configs.config_map_key(namespace, key.name, key.key)
        except ConfigError:
            if key.optional:
                return None
            raise
        return Source(value.decode("utf-8", errors="replace"), literal=True)
    if ref.HasField("secret_key_ref"):
        key = ref.secret_key_ref
        try:
            value = configs.secret_key(namespace, key.name, key.key)
        except ConfigError:
            if key.optional:
                return None
            raise
        return Source(value.decode("utf-8", errors="replace"), secret=True, literal=True)
    if ref.HasField("field_ref"):
        return Source(field_value(pod, ref.field_ref.field_path, place), literal=True)
    if ref.HasField("resource_field_ref"):
        value = resource_value(pod, ref.resource_field_ref, default_container=container.name)
        return Source(value, literal=True)
    raise ValueError("valueFrom names no source")

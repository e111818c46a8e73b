"""A stage's image state, the config-only instructions, and the final config and manifest.

`State` is what a stage has built so far: its layers, its image config (`config` section of the
OCI config: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal,
Healthcheck, Shell, OnBuild), its history, the ARGs in scope, and `fs_key`, the chain key of its
file system (the base image's layers, then every layer step's cache key).

`apply(state, instruction, env)` executes ENV, ARG, LABEL, MAINTAINER, WORKDIR, USER, EXPOSE,
VOLUME, STOPSIGNAL, ENTRYPOINT, CMD, SHELL, HEALTHCHECK and ONBUILD: pure, no file touched; the
config change is kept in the image (as Docker does) and recorded in the history as an empty
layer.

Invariants: documents are serialised with sorted keys and no blanks, and every `created` is the
fixed `CREATED`, so the same state always gives the same config and manifest digests.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pilothouse.cli.build import words
from pilothouse.cli.build.containerfile import Instruction
from pilothouse.oci import manifest as m
from pilothouse.oci import sha256_digest

CREATED = "1970-01-01T00:00:00Z"
DEFAULT_SHELL = ("/bin/sh", "-c")
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


@dataclass(frozen=True, slots=True)
class Layer:
    diff_id: str
    digest: str
    size: int
    media_type: str = m.OCI_LAYER_GZIP


@dataclass(frozen=True, slots=True)
class State:
    fs_key: str
    layers: tuple[Layer, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    args: dict[str, str] = field(default_factory=dict)  # ARGs in scope, with values
    architecture: str = "amd64"
    os: str = "linux"
    cmd_from_base: bool = True  # Cmd came from the base image (ENTRYPOINT then resets it)

    @property
    def env(self) -> dict[str, str]:
        out = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def expansion_env(self) -> dict[str, str]:
        """Variables for expanding instruction arguments: ARGs, overridden by ENV."""
        return {**self.args, **self.env}

    def run_env(self) -> list[str]:
        """The environment of a RUN step: the image's Env, plus ARGs not overridden by it."""
        env = list(self.config.get("Env") or [])
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in names]
        return env

    @property
    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.get("Shell") or DEFAULT_SHELL)

    def with_layer(self, layer: Layer | None, *, key: str, created_by: str) -> State:
        entry: dict[str, Any] = {"created": CREATED, "created_by": created_by}
        if layer is None:
            entry["empty_layer"] = True
        layers = self.layers if layer is None else (*self.layers, layer)
        return replace(self, fs_key=key, layers=layers, history=(*self.history, entry))


def from_image(*, fs_key: str, manifest: m.Manifest, config: Mapping[str, Any]) -> State:
    """A stage's starting state from a stored base image."""
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = []
    for diff_id, desc in zip(diff_ids, manifest.layers, strict=True):
        media = m.OCI_LAYER_GZIP if desc.media_type == m.DOCKER_LAYER_GZIP else desc.media_type
        layers.append(Layer(diff_id, desc.digest, desc.size, media or m.OCI_LAYER_GZIP))
    history = tuple(
        {**h, "created": CREATED} for h in (config.get("history") or []) if isinstance(h, dict)
    )
    return State(
        fs_key=fs_key,
        layers=tuple(layers),
        config=copy.deepcopy(dict(config.get("config") or {})),
        history=history,
        architecture=str(config.get("architecture") or "amd64"),
        os=str(config.get("os") or "linux"),
    )


def _set_env(config: dict[str, Any], key: str, value: str) -> None:
    env = list(config.get("Env") or [])
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    config["Env"] = env


def _command(ins: Instruction, state: State) -> list[str]:
    if ins.exec_form is not None:
        return list(ins.exec_form)
    return [*state.shell, ins.args] if ins.args.strip() else []


def _duration(ins: Instruction, flag: str, text: str) -> int:
    total = 0
    rest = text
    while rest:
        match = re.match(r"(\d+(?:\.\d+)?)(ms|s|m|h)", rest)
        if not match:
            raise ins.error(f"--{flag}={text}: not a duration (like 30s, 1m30s, 500ms)")
        total += int(float(match.group(1)) * _UNIT_NS[match.group(2)])
        rest = rest[match.end() :]
    return total


def _healthcheck(ins: Instruction, state: State) -> dict[str, Any]:
    kind, _, rest = ins.args.strip().partition(" ")
    if kind.upper() == "NONE":
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD":
        raise ins.error("expected `HEALTHCHECK [OPTIONS] CMD command` or `HEALTHCHECK NONE`")
    rest = rest.strip()
    try:
        value = json.loads(rest) if rest.startswith("[") else None
    except ValueError:
        value = None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        test = ["CMD", *value]
    else:
        test = ["CMD-SHELL", rest]
    out: dict[str, Any] = {"Test": test}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        if flag in ins.flags:
            out[key] = _duration(ins, flag, ins.flags[flag])
    if "retries" in ins.flags:
        if not ins.flags["retries"].isdigit():
            raise ins.error(f"--retries={ins.flags['retries']}: not a whole number")
        out["Retries"] = int(ins.flags["retries"])
    return out


def apply(
    state: State,
    ins: Instruction,
    *,
    build_args: Mapping[str, str],
    global_args: Mapping[str, str | None],
    escape: str = "\\",
) -> State:
    """Execute one config-only instruction; return the new state (history entry added)."""
    config = copy.deepcopy(state.config)
    args = dict(state.args)
    cmd_from_base = state.cmd_from_base
    env = state.expansion_env()
    kw = ins.keyword
    try:
        if kw == "ENV":
            for key, value in words.pairs(ins.args, env, escape=escape):
                _set_env(config, key, value)
        elif kw == "ARG":
            for word in words.split(ins.args, env, escape=escape):
                name, eq, default = word.partition("=")
                value = build_args.get(name)
                if value is None:
                    value = default if eq else global_args.get(name)
                if value is not None:
                    args[name] = value
        elif kw == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(words.pairs(ins.args, env, escape=escape))
            config["Labels"] = labels
        elif kw == "MAINTAINER":
            config.setdefault("Labels", {})
            config["Labels"]["maintainer"] = ins.args.strip()
        elif kw == "WORKDIR":
            path = words.expand(ins.args.strip(), env, escape=escape)
            base = config.get("WorkingDir") or "/"
            config["WorkingDir"] = posixpath.normpath(posixpath.join(base, path))
        elif kw == "USER":
            config["User"] = words.expand(ins.args.strip(), env, escape=escape)
        elif kw == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for word in words.split(ins.args, env, escape=escape):
                match = _PORT.match(word)
                if not match or not 0 < int(match.group(1)) < 65536:
                    raise ins.error(f"{word!r} is not a port (like 80, 8080/tcp, 53/udp)")
                ports[f"{word.split('/')[0]}/{match.group(3) or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
        elif kw == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            paths = ins.exec_form or words.split(ins.args, env, escape=escape)
            for path in paths:
                volumes[words.expand(path, env, escape=escape)] = {}
            config["Volumes"] = volumes
        elif kw == "STOPSIGNAL":
            config["StopSignal"] = words.expand(ins.args.strip(), env, escape=escape)
        elif kw == "ENTRYPOINT":
            config["Entrypoint"] = _command(ins, state) or None
            if cmd_from_base:
                config.pop("Cmd", None)
        elif kw == "CMD":
            config["Cmd"] = _command(ins, state) or None
            cmd_from_base = False
        elif kw == "SHELL":
            if ins.exec_form is None or not ins.exec_form:
                raise ins.error('needs the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
            config["Shell"] = list(ins.exec_form)
        elif kw == "HEALTHCHECK":
            config["Healthcheck"] = _healthcheck(ins, state)
        elif kw == "ONBUILD":
            config["OnBuild"] = [*(config.get("OnBuild") or []), ins.args.strip()]
        else:
            raise ins.error("is not a config-only instruction")
    except words.WordError as exc:
        raise ins.error(str(exc)) from None
    config = {k: v for k, v in config.items() if v not in (None, {}, [])}
    history = {"created": CREATED, "created_by": ins.original, "empty_layer": True}
    return replace(
        state,
        config=config,
        args=args,
        cmd_from_base=cmd_from_base,
        history=(*state.history, history),
    )


def documents(state: State) -> tuple[bytes, bytes, m.Descriptor]:
    """(config JSON, manifest JSON, manifest descriptor) of the image `state` describes."""
    config = {
        "architecture": state.architecture,
        "os": state.os,
        "created": CREATED,
        "config": state.config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]},
        "history": list(state.history),
    }
    config_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_desc = m.Descriptor(m.OCI_CONFIG, sha256_digest(config_raw), len(config_raw))
    manifest = {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [
            m.Descriptor(layer.media_type, layer.digest, layer.size).to_json()
            for layer in state.layers
        ],
    }
    manifest_raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    desc = m.Descriptor(m.OCI_MANIFEST, sha256_digest(manifest_raw), len(manifest_raw))
    return config_raw, manifest_raw, desc

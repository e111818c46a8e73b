"""A container's volume mounts as runtime bind mounts (pure, but for `subPath` directories).

Rules (the kubelet's):
- each `volumeMounts[]` binds its volume's directory at `mountPath`; `readOnly` makes it
  read-only, and configMap, secret, downwardAPI and projected volumes are always read-only;
- `subPath` (or `subPathExpr` with `$(VAR)` from the container's environment) binds that
  path inside the volume instead, made as a directory when it does not exist (writable
  volumes only); it is resolved once, when the container is made, so it keeps what it bound
  when the volume's files are replaced later;
- `mountPropagation: HostToContainer` binds rslave (mounts made below the source on the node
  appear in the container), else rprivate.

Invariant: a subPath is resolved through symlinks on the node and must stay inside its volume
(a symlink planted in a volume cannot bind a node path into a container).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nodeagent.runtime import Mount
from pilothouse.v1 import objects_pb2

Expand = Callable[[str, dict[str, str]], str]


class MountError(Exception):
    """A volume mount cannot be made (a subPath leaving its volume …)."""


@dataclass(frozen=True, slots=True)
class VolumeDir:
    """Where one volume is on the node, and whether containers may write to it."""

    path: Path
    read_only: bool = False  # configMap, secret, downwardAPI, projected


def container_mounts(
    volume_mounts: Iterable[objects_pb2.VolumeMount],
    volumes: Mapping[str, VolumeDir],
    env: dict[str, str],
    *,
    expand: Expand,
) -> tuple[Mount, ...]:
    """The bind mounts of one container (`expand(text, env)`: Kubernetes' $(VAR) expansion)."""
    out = []
    for mount in volume_mounts:
        name, target = mount.name, mount.mount_path
        volume = volumes.get(name)
        if volume is None:
            raise MountError(f'volume "{name}" is not ready (or not in the pod)')
        sub = mount.sub_path
        if not sub and mount.sub_path_expr:
            sub = expand(mount.sub_path_expr, env)
        source = _sub_path(volume, sub) if sub else volume.path
        propagation = "rslave" if mount.mount_propagation == "HostToContainer" else "rprivate"
        options = ["rbind", propagation]
        if volume.read_only or mount.read_only:
            options.append("ro")
        out.append(Mount(type="bind", source=str(source), target=target, options=tuple(options)))
    return tuple(out)


def _sub_path(volume: VolumeDir, sub: str) -> Path:
    if sub.startswith("/") or ".." in sub.split("/"):
        raise MountError(f'subPath "{sub}" must be a relative path inside its volume')
    root = Path(os.path.realpath(volume.path))
    wanted = volume.path / sub
    if not os.path.lexists(wanted) and not volume.read_only:
        wanted.mkdir(parents=True, mode=0o750, exist_ok=True)
    resolved = Path(os.path.realpath(wanted))
    if resolved != root and root not in resolved.parents:
        raise MountError(f'subPath "{sub}" resolves outside its volume ({resolved}): refused')
    if not resolved.exists():
        raise MountError(f'subPath "{sub}" does not exist in its volume')
    return resolved

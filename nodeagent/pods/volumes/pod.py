"""One pod's volumes: made before its containers, files kept current, mounts, removal.

`PodVolumes.prepare` makes every volume of the pod that is not ready yet (a failed one is
retried by the worker, which shows the error as the kubelet's FailedMount event and keeps
the pod's containers waiting in ContainerCreating); `refresh` rewrites the files of
configMap, secret, downwardAPI and projected volumes from the node's latest push (atomically,
see `atomic`), so a changed ConfigMap reaches the pod's files within one push; `mounts_for`
gives a container's bind mounts; `remove` unmounts and deletes everything the pod's volumes
made on the node.

Invariants:
- a volume directory is made once per pod: `prepare` never remakes a ready one, so a
  container restart finds the emptyDir it wrote to;
- a source `PodVolumes` does not make itself (persistentVolumeClaim) is asked of its resolver
  (see the package docstring); without one the volume fails with a message naming it;
- with the pod's fsGroup, volumes it may write (emptyDir, and payload files) belong to that
  group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nodeagent.pods.configs import Configs
from nodeagent.pods.fields import PodPlace
from nodeagent.pods.volumes import atomic, sources
from nodeagent.pods.volumes.host import HostPathError, VolumeHost
from nodeagent.pods.volumes.mounts import Expand, MountError, VolumeDir, container_mounts
from nodeagent.runtime import Mount
from pilothouse import quantity
from pilothouse.v1 import objects_pb2

Resolver = Callable[[objects_pb2.Pod, objects_pb2.Volume], Path]
VOLUMES_DIR = "volumes"
_PLUGINS = {
    "empty_dir": "kubernetes.io~empty-dir",
    "config_map": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downward_api": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}


class VolumeError(Exception):
    """A volume could not be set up; `str()` is the kubelet's FailedMount message."""

    def __init__(self, volume: str, why: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {why}')
        self.volume = volume


class PodVolumes:
    def __init__(
        self,
        *,
        pod: objects_pb2.Pod,
        pod_dir: Path,
        host: VolumeHost,
        resolvers: Mapping[str, Resolver] | None = None,
        log: Any = None,
    ) -> None:
        self._pod = pod
        self.root = pod_dir / VOLUMES_DIR
        self._host = host
        self._resolvers = dict(resolvers or {})
        self._log = log
        self.dirs: dict[str, VolumeDir] = {}
        self._refreshed = -1  # the Configs version the payloads were last written from
        context = pod.spec.security_context
        self._gid = context.fs_group if context.HasField("fs_group") else None

    @property
    def ready(self) -> bool:
        return len(self.dirs) == len(self._pod.spec.volumes)

    def prepare(self, configs: Configs, place: PodPlace) -> None:
        """Make every volume not made yet; raise `VolumeError` for the first that fails."""
        for volume in self._pod.spec.volumes:
            if volume.name in self.dirs:
                continue
            try:
                self.dirs[volume.name] = self._make(volume, configs, place)
            except (sources.PayloadError, HostPathError, OSError, ValueError) as exc:
                raise VolumeError(volume.name, str(exc)) from None
        self._refreshed = configs.version

    def refresh(self, configs: Configs, place: PodPlace) -> list[str]:
        """Rewrite payload volumes from `configs`; the names of those that changed. A volume
        whose source went missing keeps its files (as the kubelet does) and is reported."""
        if configs.version == self._refreshed:
            return []
        changed = []
        for volume in self._pod.spec.volumes:
            made = self.dirs.get(volume.name)
            if made is None or not sources.is_payload(volume):
                continue
            try:
                files = sources.payload(self._pod, volume, configs, place)
            except sources.PayloadError as exc:
                if self._log is not None:
                    self._log.warning("volume.refresh_failed", volume=volume.name, error=str(exc))
                continue
            if atomic.write(made.path, files, gid=self._gid):
                changed.append(volume.name)
        self._refreshed = configs.version
        return changed

    def mounts_for(
        self, container: objects_pb2.Container, env: dict[str, str], *, expand: Expand
    ) -> tuple[Mount, ...]:
        try:
            return container_mounts(container.volume_mounts, self.dirs, env, expand=expand)
        except MountError as exc:
            raise VolumeError(_mount_name(container), str(exc)) from None

    @staticmethod
    def remove(pod_dir: Path, host: VolumeHost) -> None:
        """Unmount and delete every volume of the pod directory (no spec needed)."""
        root = pod_dir / VOLUMES_DIR
        if root.exists():
            host.remove(root)

    # -- making one volume ----------------------------------------------------------------

    def _make(self, volume: objects_pb2.Volume, configs: Configs, place: PodPlace) -> VolumeDir:
        if volume.HasField("empty_dir"):
            return VolumeDir(self._empty_dir(volume))
        if volume.HasField("host_path"):
            return VolumeDir(self._host.host_path(volume.host_path.path, volume.host_path.type))
        if sources.is_payload(volume):
            path = self._dir(volume)
            self._host.memory_dir(path, mode=0o755)
            if configs.version == 0 and (path / atomic.DATA).is_symlink():
                # A restarted agent, before its first push: keep the files the volume has
                # (the push that follows refreshes them).
                return VolumeDir(path, read_only=True)
            files = sources.payload(self._pod, volume, configs, place)
            atomic.write(path, files, gid=self._gid)
            return VolumeDir(path, read_only=True)
        field = _source_field(volume)
        resolver = self._resolvers.get(field)
        if resolver is None:
            raise ValueError(f"{field or 'this'} volumes are not supported on this node")
        read_only = bool(getattr(getattr(volume, field), "read_only", False))
        return VolumeDir(resolver(self._pod, volume), read_only=read_only)

    def _empty_dir(self, volume: objects_pb2.Volume) -> Path:
        path = self._dir(volume)
        source = volume.empty_dir
        if source.medium == "Memory":
            self._host.memory_dir(path, size_bytes=self._memory_size(source), mode=0o777)
        else:
            self._host.disk_dir(path)
        if self._gid is not None:
            self._host.own(path, self._gid)
        return path

    def _memory_size(self, source: objects_pb2.EmptyDirVolumeSource) -> int | None:
        """sizeLimit, else the pod's memory limit when every container has one (the
        kubelet's rule); None: the tmpfs default."""
        if source.size_limit:
            return quantity.parse_memory(source.size_limit)
        limits = [c.resources.limits.get("memory") for c in self._pod.spec.containers]
        if limits and all(limits):
            return sum(quantity.parse_memory(v) for v in limits if v)
        return None

    def _dir(self, volume: objects_pb2.Volume) -> Path:
        return self.root / _PLUGINS[_source_field(volume)] / volume.name


def _source_field(volume: objects_pb2.Volume) -> str:
    """The name of the volume's source field ("empty_dir", "persistent_volume_claim" …)."""
    for descriptor, _ in volume.ListFields():
        if descriptor.name != "name":
            return descriptor.name
    return ""


def _mount_name(container: objects_pb2.Container) -> str:
    return container.volume_mounts[0].name if container.volume_mounts else container.name

"""What a pod needs on the node before its first container: volumes and shared namespaces.

`PodPreparation` is one pod's: `ensure()` makes its volumes (retrying a failed one with the
kubelet's FailedMount event, and at once when a push brings new ConfigMaps or Secrets) and then
pins its IPC (and PID) namespaces; `pushed()` rewrites its volume files from a new push;
`retry()` lets a volume that waits try again at once (the pod's annotations changed: a claim's
node path arrived); `remove(pod_dir)` undoes everything (also for an orphan known only by its
directory).

Invariant: no container of the pod is made before `ensure()` returned; until then the pod's
containers show ContainerCreating.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodeagent.pods.configs import Configs
from nodeagent.pods.events import EventType, PodEvents, Reason
from nodeagent.pods.fields import PodPlace
from nodeagent.pods.namespaces import NamespaceError, PodNamespaces
from nodeagent.pods.restart import Backoff, BackoffConfig
from nodeagent.pods.volumes import PodVolumes, Resolver, VolumeError, VolumeHost
from pilothouse.v1 import objects_pb2


class PodPreparation:
    def __init__(
        self,
        *,
        pod: objects_pb2.Pod,
        pod_dir: Path,
        node_mounts: bool,
        resolvers: dict[str, Resolver],
        configs: Callable[[], Configs],
        place: Callable[[], PodPlace],
        events: PodEvents,
        backoff: BackoffConfig,
        on_failure: Callable[[], None],
        log: Any,
    ) -> None:
        self.volumes = PodVolumes(
            pod=pod,
            pod_dir=pod_dir,
            host=VolumeHost(tmpfs=node_mounts),
            resolvers=resolvers,
            log=log,
        )
        self._namespaces = PodNamespaces(
            pod_dir=pod_dir, share_pid=pod.spec.share_process_namespace, pin=node_mounts
        )
        self._configs = configs
        self._place = place
        self._events = events
        self._backoff = backoff
        self._on_failure = on_failure  # show the pod's containers as ContainerCreating
        self._log = log
        self._pushed = asyncio.Event()

    async def ensure(self) -> dict[str, str]:
        """Make the volumes, then the namespaces; the namespaces' paths by type."""
        backoff = Backoff(self._backoff)
        while not self.volumes.ready:
            try:
                await asyncio.to_thread(self.volumes.prepare, self._configs(), self._place())
            except VolumeError as exc:
                self._failed(str(exc), Reason.FAILED_MOUNT, volume=exc.volume)
                self._pushed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.next()):
                        await self._pushed.wait()
        backoff = Backoff(self._backoff)
        while True:
            try:
                return await self._namespaces.ensure()
            except (NamespaceError, OSError) as exc:
                message = f"Failed to create pod sandbox: {exc}"
                self._failed(message, Reason.FAILED_CREATE_POD_SANDBOX, volume="")
                await asyncio.sleep(backoff.next())

    def _failed(self, message: str, reason: Reason, *, volume: str) -> None:
        self._log.warning("pod.preparation_failed", volume=volume or None, error=message)
        self._events.record(type=EventType.WARNING, reason=reason, message=message)
        self._on_failure()

    def retry(self) -> None:
        """Let a volume that waits try again now (the pod's annotations changed)."""
        self._pushed.set()

    def pushed(self) -> list[str]:
        """The node got other ConfigMaps or Secrets: rewrite the pod's volume files (the
        names of those that changed) and let a volume that waited for them try again."""
        self._pushed.set()
        if not self.volumes.ready:
            return []
        try:
            changed = self.volumes.refresh(self._configs(), self._place())
        except OSError as exc:
            self._log.warning("pod.volume_refresh_failed", error=str(exc))
            return []
        if changed:
            self._log.info("pod.volumes_updated", volumes=",".join(changed))
        return changed

    @staticmethod
    def remove(pod_dir: Path) -> None:
        """Unmount and delete the pod's volumes, end and unpin its namespaces."""
        PodVolumes.remove(pod_dir, VolumeHost(tmpfs=True))
        PodNamespaces.remove(pod_dir)

"""The pod manager: the node's desired pod set in, one worker per pod, observed pods out.

Role: `sync(desired)` records the node's whole desired set and reconciles at once (it answers
without waiting for the disk; the set is persisted in `nodeagent.state` in the background):
a pod without a worker gets one; a worker whose pod left the set, or whose pod changed (new
uid or spec hash), is stopped and removed, and a changed pod is started again only after its
predecessor is gone (one pod name never runs twice at once). `pods()` and
`watch()` report the observed status, and `watch()` also hands over each pod's events (what
its worker recorded since the last report); `logs()` reads a container's log files
(`pods.logs`). Publishing the statuses and events to watchers: `pods.publishing`.

Invariants:
- Level-triggered: `sync` is idempotent, and `start()` rebuilds the same workers from the
  persisted desired set and the runtime's containers (re-adoption, `pods.adoption`) without
  restarting any.
- Containers that belong to no desired pod (by their labels) are stopped and removed, but only
  against a known desired set: when the persisted set is missing or unreadable, `start()`
  touches nothing (no container, no sandbox) and the first `sync` decides, as the kubelet
  waits for its pod sources before cleaning up.
- The clean-up of an orphan never touches what a live pod of the same uid uses (its sandbox,
  its directory): that pod's worker starts only once the orphan is gone.
- `sync(fence=True)` (the control plane fencing a node that was lost) ends every pod that is
  being removed at once (SIGKILL) and answers only once their containers are gone.
- No container is created for a pod before a desired set holding that pod is on disk, so a
  restarted agent re-adopts every container it made (persisting is coalesced: a burst of
  syncs costs one or two writes, and `close` finishes the last one).
- A worker started for a pod that has no container left anywhere (its predecessor and any
  orphan of its name are gone) is told so, and does not list the runtime to find out.
- Shutting the manager down (`close`, or cancelling `run`) leaves every container running.
- A pod's events go out once, with the first report of the pod after they happened (a report
  is sent for new events even when the status did not change); while nobody watches they
  wait in the worker (bounded) for the next watcher. Events never hold up a report.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from nodeagent.images import ImageService
from nodeagent.pods import adoption, logs, specs
from nodeagent.pods.configs import Configs
from nodeagent.pods.logs import BadRequest, PodNotFound
from nodeagent.pods.persisting import DesiredSetWriter
from nodeagent.pods.publishing import EventType, PodEvent, Publisher
from nodeagent.pods.validation import validate
from nodeagent.pods.worker import PodWorker, WorkerConfig
from nodeagent.runtime import ContainerRuntime, ContainerState
from nodeagent.state import DesiredPods
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

__all__ = [
    "BadRequest",
    "EventType",
    "PodEvent",
    "PodManager",
    "PodNotFound",
    "validate",
]


class PodManager:
    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        images: ImageService,
        config: WorkerConfig,
        max_pods: int = 110,
    ) -> None:
        self._max_pods = max_pods
        self._runtime = runtime
        self._images = images
        self._config = config
        self._disk = DesiredSetWriter(
            DesiredPods(config.state_dir), current=lambda: list(self._desired.values())
        )
        self._desired: dict[str, objects_pb2.Pod] = {}
        # The ConfigMaps and Secrets of the last push (memory only: see `pods.configs`).
        self._configs = Configs()
        self._workers: dict[str, PodWorker] = {}
        self._tasks: dict[PodWorker, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._publisher = Publisher()
        self._started = False
        # pod key -> workers of that key being stopped (orphans included); pod uid -> the same.
        self._stopping: dict[str, int] = {}
        self._stopping_uids: dict[str, int] = {}
        self._stops: dict[PodWorker, asyncio.Task[None]] = {}
        # Whether the desired set is known (loaded from disk, or pushed since the start).
        self._known = False
        self._adopting = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Runnable: start (re-adopt), then supervise until cancelled; containers stay."""
        if not self._started:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def start(self) -> None:
        """Rebuild workers from the persisted desired set and the runtime's containers; with
        no readable set, keep everything as it is until the first `sync`."""
        desired = self._disk.state.load()
        self._started = True
        if desired is None:
            found = adoption.found(await self._runtime.list())
            log.warning(
                "pods.desired_unknown",
                containers=found.containers,
                note="no readable record of this node's pods: every container is left running "
                "until the control plane pushes them",
            )
            return
        self._desired = {specs.pod_key(p): p for p in desired if validate(p) is None}
        await self._adopt()

    async def _adopt(self) -> None:
        """Adopt or retire what the runtime holds against the (now known) desired set."""
        async with self._adopting:
            if not self._known:
                await self._adopt_found()
        self._reconcile()

    async def _adopt_found(self) -> None:
        found = adoption.found(await self._runtime.list())
        verdicts = found.verdicts(self._desired)
        for want, group in verdicts.adopted:
            log.info("pod.adopting", pod=group.key, uid=group.uid, containers=len(group.containers))
            self._start_worker(want, adopted=list(group.containers))
        for group in verdicts.orphans:
            log.info("pod.orphaned", pod=group.key, uid=group.uid, containers=len(group.containers))
            skeleton = self._skeleton(group.key, group.uid)
            self._retire(self._make_worker(skeleton, adopted=list(group.containers), known=True))
        for stray in found.strays:
            self._background_task(
                adoption.remove_stray(self._runtime, self._images, stray, log=log),
                name=f"remove stray {stray.id}",
            )
        # Sandboxes of pods that are gone (removed while no agent ran, or a failed detach).
        await self._config.networks.detach_others(self._desired.values())
        self._known = True

    async def close(self) -> None:
        """Stop supervising (containers keep running), finish persisting, end background tasks."""
        await self._disk.close()
        tasks = [*self._tasks.values(), *self._background]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._background.clear()

    # -- the API ------------------------------------------------------------------------------

    async def sync(
        self,
        desired: list[objects_pb2.Pod],
        *,
        fence: bool = False,
        configs: Configs | None = None,
    ) -> dict[str, str]:
        """Make `desired` the node's pod set; returns the rejected pods with the reason.
        `configs`: the ConfigMaps and Secrets those pods use (kept in memory only; a change
        rewrites the pods' volume files).

        `fence`: every pod being removed ends now (SIGKILL) and this returns once it is gone."""
        if configs is not None and (
            not configs.same_objects(self._configs) or self._configs.version == 0
        ):
            self._configs = dataclasses.replace(configs, version=self._configs.version + 1)
            for worker in list(self._workers.values()):
                worker.configs_changed()
        rejected: dict[str, str] = {}
        accepted: dict[str, objects_pb2.Pod] = {}
        for pod in desired:
            key = specs.pod_key(pod)
            why = validate(pod)
            if why is None and key in accepted:
                why = "the same pod appears twice in the set"
            if why is None and len(accepted) >= self._max_pods:
                why = f"the node runs at most {self._max_pods} pods (--max-pods)"
            if why is not None:
                rejected[key] = why
                continue
            accepted[key] = pod
        if accepted != self._desired or not self._known:
            self._desired = accepted
            self._disk.changed()
            log.info("pods.synced", pods=len(accepted), rejected=len(rejected))
        if self._started and not self._known:
            await self._adopt()  # the first set pushed since a start that had none
        elif self._started:
            self._reconcile()
        if fence and self._started:
            await self._fenced()
        return rejected

    async def _fenced(self) -> None:
        """End every pod being removed now, and return once all are gone."""
        stops = list(self._stops.items())
        if not stops:
            return
        log.info("pods.fencing", stopping=len(stops))
        await asyncio.gather(*(worker.expedite() for worker, _ in stops), return_exceptions=True)
        # Shielded: a caller that gives up (a deadline) must not cancel the stops themselves.
        await asyncio.gather(*(asyncio.shield(task) for _, task in stops), return_exceptions=True)

    def pods(self) -> list[objects_pb2.Pod]:
        return [w.observed() for w in self._workers.values() if not w.stopping]

    def workers(self) -> list[PodWorker]:
        """The workers of the pods the node runs (not those being removed), for eviction."""
        return [w for w in self._workers.values() if not w.stopping]

    def watch(self) -> AsyncIterator[PodEvent]:
        """Every pod's current status first, then each change as it happens."""
        return self._publisher.watch(lambda: self._workers.values())

    def log_path(
        self, *, namespace: str, pod: str, container: str = "", previous: bool = False
    ) -> Path:
        """The log file of a pod's container (its current attempt, or the previous one)."""
        key = f"{namespace or 'default'}/{pod}"
        worker = self._workers.get(key)
        if worker is None:
            raise PodNotFound(f'pod "{pod}" not found in namespace "{namespace or "default"}"')
        return logs.log_path(
            worker, state_dir=self._config.state_dir, container=container, previous=previous
        )

    async def logs(
        self,
        *,
        namespace: str,
        pod: str,
        container: str = "",
        tail_lines: int = -1,
        follow: bool = False,
        previous: bool = False,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        """A container's output lines (CRI log decoded); `follow` streams until it stops."""
        path = self.log_path(namespace=namespace, pod=pod, container=container, previous=previous)
        key = f"{namespace or 'default'}/{pod}"
        worker = self._workers[key]
        name = container or worker.pod.spec.containers[0].name

        def finished() -> bool:
            w = self._workers.get(key)
            if previous or w is not worker or w.stopping:
                return True
            rec = w.records.get(name)
            return rec is None or not rec.started or path.name != f"{rec.restart_count}.log"

        async for chunk in logs.lines(
            path,
            tail_lines=tail_lines,
            follow=follow,
            finished=finished,
            since=since,
            timestamps=timestamps,
        ):
            yield chunk

    # -- reconciling --------------------------------------------------------------------------

    def _reconcile(self) -> None:
        if not self._known:
            return  # nothing is decided before the desired set is known (see `start`)
        for key, worker in list(self._workers.items()):
            want = self._desired.get(key)
            if worker.stopping:
                continue
            if want is None or not worker.matches(want):
                self._retire(worker)
            elif want.metadata != worker.pod.metadata:
                worker.pod.metadata.CopyFrom(want.metadata)  # labels etc.: no restart
                worker.metadata_changed()
                self._published_changed(worker)
        for key, pod in self._desired.items():
            if key not in self._workers and not self._stopping_uids.get(pod.metadata.uid):
                # (An orphan of the same uid holds its sandbox and directory until it is gone:
                # its `_stop` reconciles again.)
                # Nothing of this name is left unless an orphan of it is still being stopped.
                self._start_worker(pod, adopted=[], known=not self._stopping.get(key))

    def _make_worker(
        self, pod: objects_pb2.Pod, *, adopted: list[ContainerState], known: bool
    ) -> PodWorker:
        version = self._disk.version

        async def persisted() -> None:
            await self._disk.persisted(version)

        return PodWorker(
            pod=pod,
            runtime=self._runtime,
            images=self._images,
            config=self._config,
            adopted=adopted,
            adopted_all=known,
            persisted=persisted,
            on_change=self._published_changed,
            configs=lambda: self._configs,
        )

    def _start_worker(
        self, pod: objects_pb2.Pod, *, adopted: list[ContainerState], known: bool = True
    ) -> None:
        worker = self._make_worker(pod, adopted=adopted, known=known)
        self._workers[worker.key] = worker
        self._tasks[worker] = asyncio.create_task(worker.run(), name=f"pod {worker.key}")
        self._tasks[worker].add_done_callback(self._task_ended)
        log.info("pod.accepted", pod=worker.key, uid=worker.uid, adopted=len(adopted))
        worker.changed()  # reported with what its first steps change (same turn of the loop)

    def _retire(self, worker: PodWorker) -> None:
        worker.stopping = True
        self._stopping[worker.key] = self._stopping.get(worker.key, 0) + 1
        self._stopping_uids[worker.uid] = self._stopping_uids.get(worker.uid, 0) + 1
        task = self._background_task(self._stop(worker), name=f"stop pod {worker.key}")
        self._stops[worker] = task
        task.add_done_callback(lambda _: self._stops.pop(worker, None))

    def _background_task(self, work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(self._task_ended)
        return task

    async def _stop(self, worker: PodWorker) -> None:
        supervision = self._tasks.pop(worker, None)
        if supervision is not None:
            supervision.cancel()
            await asyncio.gather(supervision, return_exceptions=True)
        while True:
            try:
                await worker.stop()
                break
            except Exception:
                log.exception("pod.stop_failed", pod=worker.key, uid=worker.uid)
                await asyncio.sleep(1)
        for counts, key in ((self._stopping, worker.key), (self._stopping_uids, worker.uid)):
            left = counts.pop(key, 1) - 1
            if left:
                counts[key] = left
        if self._workers.get(worker.key) is worker:
            del self._workers[worker.key]
        self._publisher.removed(worker)
        self._reconcile()

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("pod.task_failed", task=task.get_name(), error=repr(exc))

    # -- publishing ---------------------------------------------------------------------------

    def _published_changed(self, worker: PodWorker) -> None:
        if worker.stopping or self._workers.get(worker.key) is not worker:
            return
        self._publisher.update(worker)

    @staticmethod
    def _skeleton(key: str, uid: str) -> objects_pb2.Pod:
        namespace, _, name = key.partition("/")
        return objects_pb2.Pod(
            metadata=objects_pb2.ObjectMeta(namespace=namespace, name=name, uid=uid)
        )

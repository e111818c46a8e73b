"""One worker per pod: converges the pod's containers towards its spec and reports what it sees.

Role: for each container of the pod, a supervision loop: ensure the image (ErrImagePull /
ImagePullBackOff with their own backoff), prepare the rootfs, create and start the container
(CreateContainerError with the runtime's message, retried with backoff), wait for its exit,
and ask the `RestartTracker` whether and when it runs again (CrashLoopBackOff while waiting).
While an attempt runs, its probes (`nodeagent.probes.prober`) decide whether it is started and
ready, and a failed liveness or startup probe ends it (SIGTERM, SIGKILL after the probe's or
the pod's grace period); that exit goes through the same restart policy and backoff.
`stop()` ends the pod: SIGTERM, SIGKILL after terminationGracePeriodSeconds, delete, release;
`expedite()` (a fenced node) ends its containers at once with SIGKILL.
Along the way it records the kubelet's events (`self.events`: Pulling, Pulled, Failed,
BackOff, Created, Started, Killing, Unhealthy); the manager sends them with the next report.
The worker wires its parts: `supervision` (the pod's sandbox, each container's restart
loop), `attempts` (making one attempt of a container and running it under its probes),
`teardown` (ending the pod), `workerconfig` (its settings), `pull` (images, their events
and backoff), `containers` (the pod's containers in the runtime: adoption, lookup,
removal), `stop` (grace periods, SIGTERM then SIGKILL) and `memory` (what it keeps on disk
for a restarted agent).

Invariants:
- The runtime is the source of truth: a loop (re)starts from the pod's containers in the
  runtime (as the manager found them, when it knows them all: a new pod has none; else read
  again), so a worker built by a restarted agent re-adopts running containers without
  restarting them and learns the real exit code of those that ended meanwhile. While the
  worker knows every container of its pod (it made or adopted them all), `stop()` asks the
  runtime about those alone instead of listing every container on the node.
- No container is created before the manager has the pod's desired set on disk.
- Changes are reported once per turn of the event loop, however many happen in it.
- Attempt n of a container is `<ns>_<pod>_<container>_<n>`; n is the restart count. The
  previous attempt is kept (its exit is `lastState`) until the next one starts.
- Cancelling the worker (agent shutdown) never touches containers; only `stop()` does.
- A container is ready only while running, started (its startup probe passed, if any) and,
  with a readiness probe, passing it; every new attempt starts not ready and probes afresh.
- Before any container: the pod's sandbox, then its volumes and shared namespaces
  (`preparation`). Init containers run in order before the main containers, sidecars beside
  them (`sequence`); stopping ends the main containers first and the sidecars last.
  ConfigMaps and Secrets come from the node's latest push (`configs`); a new push rewrites
  the pod's volume files (`configs_changed`).
- What the runtime cannot tell a restarted agent lives in the pod's directory: each
  container's last started/ready (`<container>/probes.json`, for its attempt) and the
  conditions' transition times (`conditions.json`), so an agent restart neither flaps
  readiness nor resets the Ready time that minReadySeconds counts from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from nodeagent.images import ImageService
from nodeagent.pods import attempts, eviction, sequence, specs, supervision, teardown
from nodeagent.pods.configs import Configs
from nodeagent.pods.containers import PodContainers, observe_adopted, terminated
from nodeagent.pods.events import EventType, PodEvents, Reason
from nodeagent.pods.memory import PodMemory
from nodeagent.pods.preparation import PodPreparation
from nodeagent.pods.pull import ImagePuller, default_pull_policy
from nodeagent.pods.pullsecrets import PullSecrets
from nodeagent.pods.restart import RestartPolicy
from nodeagent.pods.status import Conditions, ContainerRecord, Waiting, WaitingReason, pod_status
from nodeagent.pods.stop import DEFAULT_GRACE_SECONDS, grace_seconds
from nodeagent.pods.workerconfig import WorkerConfig
from nodeagent.probes import handlers as probe_handlers
from nodeagent.runtime import ContainerRuntime, ContainerState, RuntimeError_
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

__all__ = ["DEFAULT_GRACE_SECONDS", "PodWorker", "WorkerConfig", "default_pull_policy"]


class PodWorker:
    def __init__(
        self,
        *,
        pod: objects_pb2.Pod,
        runtime: ContainerRuntime,
        images: ImageService,
        config: WorkerConfig,
        adopted: list[ContainerState],
        on_change: Callable[[PodWorker], None],
        adopted_all: bool = False,
        persisted: Callable[[], Awaitable[None]] | None = None,
        configs: Callable[[], Configs] = Configs,
    ) -> None:
        """`adopted`: containers of this pod found in the runtime; `adopted_all`: they are all
        there are (else the first pass lists the runtime). `persisted`: returns once the pod
        is recorded on disk as desired; no container is created before."""
        self.pod = pod
        self.key = specs.pod_key(pod)
        self.uid = pod.metadata.uid
        self.spec_hash = specs.spec_hash(pod)
        self._runtime = runtime
        self._config = config
        self._on_change = on_change
        self._report_due = False
        self._expedited = False  # see `expedite`
        self._policy = RestartPolicy.parse(pod.spec.restart_policy)
        self._log = log.bind(pod=self.key, uid=self.uid)
        self._memory = PodMemory(state_dir=config.state_dir, pod=pod, log=self._log)
        # Why the pod was evicted (`evict`; remembered on disk), or None: it runs.
        self.evicted: str | None = self._memory.evicted()
        self._evicted_ended = False  # its containers are gone: report it Failed/Evicted
        self._supervision: asyncio.Task[None] | None = None
        self._conditions = Conditions()
        self._saved_conditions = 0
        if adopted:  # a restarted agent: keep the conditions' transition times
            self._conditions.restore(self._memory.conditions())
            self._saved_conditions = self._conditions.version
        # What happened since the last report, in the kubelet's words (see pods.events).
        self.events = PodEvents(pod)
        everyone = (*pod.spec.init_containers, *pod.spec.containers)
        self.records: dict[str, ContainerRecord] = {
            c.name: ContainerRecord(name=c.name, image=c.image) for c in everyone
        }
        self._progress = asyncio.Event()  # set (and replaced) by every `changed()`
        self._initialized = not pod.spec.init_containers or sequence.started_main(pod, adopted)
        self._init_failed = False
        for c in pod.spec.containers if not self._initialized else ():
            self.records[c.name].state = Waiting(WaitingReason.POD_INITIALIZING)
        # Every container of this pod the runtime may hold, while the worker knows them all
        # (known=None: it does not, and `stop` lists the runtime).
        self._containers = PodContainers(
            runtime=runtime,
            images=images,
            uid=self.uid,
            known={st.id for st in adopted} if adopted_all else None,
        )
        self._scope = attempts.PodScope(
            pod=pod,
            runtime=runtime,
            images=images,
            puller=ImagePuller(
                images=images,
                backoff=config.image_backoff,
                events=self.events,
                on_change=self.changed,
                log=self._log,
                credentials=PullSecrets(pod=pod, configs=configs, events=self.events),
            ),
            containers=self._containers,
            events=self.events,
            memory=self._memory,
            probes=config.probes
            or probe_handlers.for_runtime(runtime, allow_host=config.policy.allow_probe_host),
            policy=config.policy,
            changed=self.changed,
            log=self._log,
            state_dir=config.state_dir,
            pids_limit=config.pids_limit,
            persisted=persisted,
            pod_files=config.pod_files,
            configs=configs,
            host_ip=config.host_ip,
        )
        self._preparation = PodPreparation(
            pod=pod,
            pod_dir=specs.pod_dir(config.state_dir, pod),
            node_mounts=config.node_mounts,
            resolvers=config.volume_resolvers,
            configs=configs,
            place=self._scope.place,
            events=self.events,
            backoff=config.restart_backoff,
            on_failure=self._preparing,
            log=self._log,
        )
        self._scope.volumes = self._preparation.volumes
        self._adopted: dict[str, list[ContainerState]] = (
            {c.name: [] for c in everyone} if adopted_all else {}
        )
        for state in adopted:
            name = state.labels.get(specs.LABEL_CONTAINER, "")
            self._adopted.setdefault(name, []).append(state)
        starts = [s.started_at for s in adopted if s.started_at is not None]
        self.start_time = min(starts) if starts else datetime.now(UTC)
        for name, states in self._adopted.items():
            if states and name in self.records:
                self._observe_adopted(self.records[name], states)

    def matches(self, pod: objects_pb2.Pod) -> bool:
        return pod.metadata.uid == self.uid and specs.spec_hash(pod) == self.spec_hash

    @property
    def stopping(self) -> bool:
        """The pod is being removed: it reports and keeps nothing more."""
        return self._scope.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self._scope.stopping = value

    # -- status -------------------------------------------------------------------------------

    def observed(self) -> objects_pb2.Pod:
        """The pod as desired, with the status this worker observes now."""
        out = objects_pb2.Pod()
        out.CopyFrom(self.pod)
        out.api_version = out.api_version or "v1"
        out.kind = out.kind or "Pod"
        out.status.CopyFrom(
            pod_status(
                spec=self.pod.spec,
                records=[self.records[c.name] for c in self.pod.spec.containers],
                init_records=[self.records[c.name] for c in self.pod.spec.init_containers],
                initialized=self._initialized,
                init_failed=self._init_failed,
                conditions=self._conditions,
                now=datetime.now(UTC),
                start_time=self.start_time,
                host_ip=self._config.host_ip,
                generation=self.pod.metadata.generation,
                pod_ip=self._scope.sandbox.pod_ip if self._scope.sandbox else "",
            )
        )
        if self.evicted is not None and self._evicted_ended:
            eviction.mark_evicted(out.status, self.evicted)
        return out

    def _save_conditions(self) -> None:
        if self._conditions.version == self._saved_conditions or self.stopping:
            return
        self._saved_conditions = self._conditions.version
        self._memory.save_conditions(self._conditions.snapshot())

    def changed(self) -> None:
        """Something a report shows changed: report it, and keep the conditions, once at the
        end of this turn of the event loop (a burst of changes makes one report)."""
        self._progress.set()
        self._progress = asyncio.Event()
        if self._report_due:
            return
        self._report_due = True
        asyncio.get_running_loop().call_soon(self._report)

    def _report(self) -> None:
        self._report_due = False
        self._on_change(self)
        self._save_conditions()

    # -- supervision --------------------------------------------------------------------------

    async def run(self) -> None:
        """Supervise every container until cancelled (containers outlive cancellation) or
        evicted (`evict`: its containers end, and the worker only reports from then on)."""
        if self.evicted is None:
            await supervision.attach_sandbox(  # idempotent: a re-adopted pod keeps it
                self._scope,
                networks=self._config.networks,
                backoff=self._config.restart_backoff,
                records=self.records,
            )
            self._scope.namespaces = await self._preparation.ensure()
        if self.evicted is None:
            self._supervision = asyncio.create_task(self._supervise_all(), name=self.key)
            try:
                await self._supervision
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.evicted is None or (task is not None and task.cancelling()):
                    raise  # not an eviction: the agent is stopping
        await eviction.end_containers(
            runtime=self._runtime,
            containers=self._containers,
            records=self.records,
            pod_dir=specs.pod_dir(self._config.state_dir, self.pod),
            log=self._log,
        )
        self._evicted_ended = True
        self.changed()
        await asyncio.Event().wait()

    async def _supervise_all(self) -> None:
        """Init containers in order, sidecars beside, then the main containers (`sequence`)."""
        await sequence.run(
            self.pod,
            records=self.records,
            policy=self._policy,
            supervise=lambda c, policy, done: self._supervise(c, policy=policy, done=done),
            wait_for=self._wait_for,
            end_sidecar=self._end_sidecar,
            on_initialized=lambda: self._set_init(initialized=True),
            on_init_failed=lambda: self._set_init(failed=True),
        )

    def _set_init(self, *, initialized: bool = False, failed: bool = False) -> None:
        self._initialized = self._initialized or initialized
        self._init_failed = failed
        self.changed()

    async def _wait_for(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._progress.wait()

    async def _end_sidecar(self, container: objects_pb2.Container) -> None:
        """Stop a sidecar for good: the pod's main containers are done."""
        rec = self.records[container.name]
        if not rec.container_id:
            return
        self._scope.event(container.name, Reason.KILLING, f"Stopping container {container.name}")
        with contextlib.suppress(RuntimeError_):  # gone already: it ended
            state = await self._runtime.state(rec.container_id)
            grace = grace_seconds(self.pod)
            await attempts.stop_with_hook(self._scope, container, state, grace=grace)
            rec.state = terminated(await self._runtime.state(rec.container_id))
        rec.ready = rec.started = False
        self.changed()

    def _preparing(self) -> None:
        """The pod's volumes or namespaces are not made yet: its containers wait."""
        for rec in self.records.values():
            if isinstance(rec.state, Waiting):
                rec.state = Waiting(WaitingReason.CONTAINER_CREATING)
        self.changed()

    def configs_changed(self) -> None:
        """The node was pushed other ConfigMaps or Secrets: rewrite this pod's volume files
        from them (atomically), and let a volume that waited for them try again."""
        if not self.stopping and self.evicted is None:
            self._preparation.pushed()

    def metadata_changed(self) -> None:
        """The pod's labels or annotations changed (no restart): a volume that waited for
        them (a claim's node path, `claims`) tries again now."""
        if not self.stopping and self.evicted is None:
            self._preparation.retry()

    async def evict(self, message: str) -> None:
        """End the pod for good, as the kubelet evicts one: Failed, reason Evicted, `message`;
        its containers are killed at once and removed (by `run`), and it never runs again."""
        if self.evicted is not None or self.stopping:
            return
        self.evicted = message
        self._memory.save_evicted(message)
        self._log.warning("pod.evicted", message=message)
        self.events.record(type=EventType.WARNING, reason=Reason.EVICTED, message=message)
        if self._supervision is not None:
            self._supervision.cancel()

    async def _supervise(
        self,
        container: objects_pb2.Container,
        *,
        policy: RestartPolicy,
        done: asyncio.Event | None = None,
    ) -> None:
        await supervision.supervise(
            self._scope,
            container,
            self.records[container.name],
            policy=policy,
            backoff=self._config.restart_backoff,
            take_adopted=lambda: self._adopted.pop(container.name, None),
            observe=self._observe_adopted,
            done=done,
        )

    def _observe_adopted(self, rec: ContainerRecord, states: list[ContainerState]) -> None:
        """Fill a record from the containers found in the runtime (re-adoption)."""
        observe_adopted(
            rec,
            states,
            container=lambda: self._container(rec.name),
            remembered=lambda cid: self._memory.probes(rec.name, cid),
        )

    def _container(self, name: str) -> objects_pb2.Container:
        spec = self.pod.spec
        return next(c for c in (*spec.init_containers, *spec.containers) if c.name == name)

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop and remove every container of this pod (by uid), then its files. Idempotent."""
        self.stopping = True
        grace = 0 if self._expedited else grace_seconds(self.pod)
        await teardown.stop_pod(
            self._scope,
            grace=grace,
            networks=self._config.networks,
            state_dir=self._config.state_dir,
            container_of=self._container,
        )

    async def expedite(self) -> None:
        """End this pod's containers now (SIGKILL, no grace period): the node is being fenced
        and the pod's replacement may already run elsewhere. A `stop()` under way or to come
        then finishes at once."""
        self.stopping = True
        if self._expedited:
            return
        self._expedited = True
        self._log.info("pod.expedited", note="node fenced: no grace period")
        await teardown.kill_now(self._scope)

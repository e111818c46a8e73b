"""One worker per pod: converges the pod's containers towards its spec and reports what it sees.

Role: for each container of the pod, a supervision loop: ensure the image (ErrImagePull /
ImagePullBackOff with their own backoff), prepare the rootfs, create and start the container
(CreateContainerError with the runtime's message, retried with backoff), wait for its exit,
and ask the `RestartTracker` whether and when it runs again (CrashLoopBackOff while waiting).
While an attempt runs, its probes (`nodeagent.probes.prober`) decide whether it is started and
ready, and a failed liveness or startup probe ends it (SIGTERM, SIGKILL after the probe's or
the pod's grace period); that exit goes through the same restart policy and backoff.
`stop()` ends the pod: SIGTERM, SIGKILL after terminationGracePeriodSeconds, delete, release.
Along the way it records the kubelet's events (`self.events`: Pulling, Pulled, Failed,
BackOff, Created, Started, Killing, Unhealthy); the manager sends them with the next report.
The worker wires its parts: `pull` (images, their events and backoff), `containers` (the
pod's containers in the runtime: adoption, lookup, removal), `stop` (grace periods, SIGTERM
then SIGKILL) and `memory` (what it keeps on disk for a restarted agent).

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
- What the runtime cannot tell a restarted agent lives in the pod's directory: each
  container's last started/ready (`<container>/probes.json`, for its attempt) and the
  conditions' transition times (`conditions.json`), so an agent restart neither flaps
  readiness nor resets the Ready time that minReadySeconds counts from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from nodeagent.images import ImageError, ImageService
from nodeagent.network.cni import CniError
from nodeagent.network.netns import NetnsError
from nodeagent.network.sandbox import Mode, PodNetworks, Sandbox
from nodeagent.pods import specs
from nodeagent.pods.containers import PodContainers, attempt_of, observe_adopted, terminated
from nodeagent.pods.events import EventType, PodEvents, ProbeEvents, Reason
from nodeagent.pods.memory import PodMemory
from nodeagent.pods.pull import ImagePuller, default_pull_policy
from nodeagent.pods.restart import (
    Action,
    Backoff,
    BackoffConfig,
    Exit,
    RestartPolicy,
    RestartTracker,
)
from nodeagent.pods.status import (
    Conditions,
    ContainerRecord,
    Running,
    Waiting,
    WaitingReason,
    pod_status,
)
from nodeagent.pods.stop import (
    DEFAULT_GRACE_SECONDS,
    grace_seconds,
    probe_grace_seconds,
    stop_container,
)
from nodeagent.probes import Handler, Target
from nodeagent.probes import handlers as probe_handlers
from nodeagent.probes.prober import ContainerProber, initial
from nodeagent.runtime import ContainerRuntime, ContainerState, RuntimeError_, Status
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

__all__ = ["DEFAULT_GRACE_SECONDS", "PodWorker", "WorkerConfig", "default_pull_policy"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    state_dir: Path
    pids_limit: int = 1024
    host_ip: str = "127.0.0.1"
    restart_backoff: BackoffConfig = field(default_factory=BackoffConfig)
    image_backoff: BackoffConfig = field(default_factory=BackoffConfig)
    # Who performs probe checks; None: the handlers that fit the runtime (runc: real ones).
    probes: Handler | None = None
    # The pod's network sandbox: made before its containers, removed after them.
    networks: PodNetworks = field(
        default_factory=lambda: PodNetworks(mode=Mode.NONE, state_dir=Path("."))
    )


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
    ) -> None:
        """`adopted`: containers of this pod found in the runtime; `adopted_all`: they are all
        there are (else the first pass lists the runtime). `persisted`: returns once the pod
        is recorded on disk as desired; no container is created before."""
        self.pod = pod
        self.key = specs.pod_key(pod)
        self.uid = pod.metadata.uid
        self.spec_hash = specs.spec_hash(pod)
        self.stopping = False
        self._runtime = runtime
        self._images = images
        self._config = config
        self._probes = config.probes or probe_handlers.for_runtime(runtime)
        self.pod_ip = ""  # the pod's address once it has one (probes prefer it to loopback)
        self._on_change = on_change
        self._report_due = False
        self._policy = RestartPolicy.parse(pod.spec.restart_policy)
        self._log = log.bind(pod=self.key, uid=self.uid)
        self._memory = PodMemory(state_dir=config.state_dir, pod=pod, log=self._log)
        self._conditions = Conditions()
        self._saved_conditions = 0
        if adopted:  # a restarted agent: keep the conditions' transition times
            self._conditions.restore(self._memory.conditions())
            self._saved_conditions = self._conditions.version
        self._sandbox: Sandbox | None = None
        # What happened since the last report, in the kubelet's words (see pods.events).
        self.events = PodEvents(pod)
        self._puller = ImagePuller(
            images=images,
            backoff=config.image_backoff,
            events=self.events,
            on_change=self.changed,
            log=self._log,
        )
        self.records: dict[str, ContainerRecord] = {
            c.name: ContainerRecord(name=c.name, image=c.image) for c in pod.spec.containers
        }
        self._persisted = persisted
        # Every container of this pod the runtime may hold, while the worker knows them all
        # (known=None: it does not, and `stop` lists the runtime).
        self._containers = PodContainers(
            runtime=runtime,
            images=images,
            uid=self.uid,
            known={st.id for st in adopted} if adopted_all else None,
        )
        self._adopted: dict[str, list[ContainerState]] = (
            {c.name: [] for c in pod.spec.containers} if adopted_all else {}
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
                conditions=self._conditions,
                now=datetime.now(UTC),
                start_time=self.start_time,
                host_ip=self._config.host_ip,
                generation=self.pod.metadata.generation,
                pod_ip=self._sandbox.pod_ip if self._sandbox else "",
            )
        )
        return out

    def _save_conditions(self) -> None:
        if self._conditions.version == self._saved_conditions or self.stopping:
            return
        self._saved_conditions = self._conditions.version
        self._memory.save_conditions(self._conditions.snapshot())

    def changed(self) -> None:
        """Something a report shows changed: report it, and keep the conditions, once at the
        end of this turn of the event loop (a burst of changes makes one report)."""
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
        """Supervise every container until cancelled; containers outlive cancellation."""
        await self._ensure_sandbox()
        async with asyncio.TaskGroup() as tg:
            for c in self.pod.spec.containers:
                tg.create_task(self._supervise(c), name=f"container {self.key}/{c.name}")

    async def _ensure_sandbox(self) -> None:
        """Attach the pod's network (idempotent: a re-adopted pod keeps its sandbox)."""
        backoff = Backoff(self._config.restart_backoff)
        while True:
            try:
                self._sandbox = await self._config.networks.attach(self.pod)
                self.pod_ip = self._sandbox.pod_ip
                self.changed()
                return
            except (CniError, NetnsError, OSError) as exc:
                self._log.warning("pod.sandbox_failed", error=str(exc))
                self.events.record(
                    type=EventType.WARNING,
                    reason=Reason.FAILED_CREATE_POD_SANDBOX,
                    message=f"Failed to create pod sandbox: {exc}",
                )
                for rec in self.records.values():
                    rec.state = Waiting(
                        WaitingReason.CONTAINER_CREATING, f"FailedCreatePodSandBox: {exc}"
                    )
                self.changed()
                await asyncio.sleep(backoff.next())

    async def _supervise(self, container: objects_pb2.Container) -> None:
        retry = Backoff(self._config.restart_backoff)
        first = True
        while True:
            try:
                await self._converge(container, adopted=self._adopted.pop(container.name, None))
                await asyncio.Event().wait()  # the container is done for good; park
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Unexpected: log and start over from the runtime's state (level-triggered).
                self._log.exception("pod.supervise_failed", container=container.name)
                self._containers.forget()
                if first:
                    self.records[container.name].state = Waiting(
                        WaitingReason.CREATE_CONTAINER_ERROR, str(exc)
                    )
                    self.changed()
                first = False
                await asyncio.sleep(retry.next())

    def _observe_adopted(self, rec: ContainerRecord, states: list[ContainerState]) -> None:
        """Fill a record from the containers found in the runtime (re-adoption)."""
        observe_adopted(
            rec,
            states,
            container=lambda: self._container(rec.name),
            remembered=lambda cid: self._memory.probes(rec.name, cid),
        )

    async def _converge(
        self, container: objects_pb2.Container, *, adopted: list[ContainerState] | None
    ) -> None:
        """Run the container per its restart policy; return when it is not to run again."""
        name = container.name
        rec = self.records[name]
        if adopted is None:
            adopted = [
                s
                for s in await self._runtime.list()
                if s.labels.get(specs.LABEL_UID) == self.uid
                and s.labels.get(specs.LABEL_CONTAINER) == name
            ]
        current: ContainerState | None = None
        attempt = 0
        if adopted:
            self._observe_adopted(rec, adopted)
            attempt = rec.restart_count
            latest = max(adopted, key=attempt_of)
            for s in adopted:
                if attempt_of(s) < attempt - 1:
                    await self._containers.remove(s.id)
            if latest.status is Status.CREATED or latest.status is Status.UNKNOWN:
                await self._containers.remove(latest.id)  # never started: create it afresh
            else:
                current = latest
                self._log.info(
                    "pod.container_adopted", container=name, id=latest.id, attempt=attempt
                )
        tracker = RestartTracker(self._policy, self._config.restart_backoff)
        create_backoff = Backoff(self._config.restart_backoff)
        while True:
            if current is None:
                current = await self._create(container, rec, attempt, create_backoff)
                if attempt >= 2:
                    old = specs.container_id(self.pod, name, attempt - 2)
                    await self._containers.remove(old)
            verdict = ""
            if current.status is not Status.STOPPED:
                current, verdict = await self._run_attempt(container, rec, current)
            term = terminated(current)
            if verdict:
                term = dataclasses.replace(term, message=verdict)
            rec.state = term
            rec.ready = False
            rec.started = False
            self._log.info(
                "pod.container_exited",
                container=name,
                exit_code=term.exit_code,
                reason=term.reason.value,
                attempt=attempt,
            )
            ran_for = 0.0
            if term.started_at and term.finished_at:
                ran_for = (term.finished_at - term.started_at).total_seconds()
            # A container killed for failing a probe counts as failed even if it exited 0 on
            # SIGTERM: the kubelet restarts it under OnFailure too.
            code = term.exit_code if not verdict or term.exit_code else 1
            decision = tracker.on_exit(Exit(code, ran_for))
            if decision.action is Action.STOP:
                self.changed()
                return
            rec.last_terminated = term
            self.events.record(
                container=name,
                type=EventType.WARNING,
                reason=Reason.BACK_OFF,
                message=f"Back-off restarting failed container {name} in pod "
                f"{self.pod.metadata.name}_{self.pod.metadata.namespace}({self.uid})",
            )
            rec.state = Waiting(
                WaitingReason.CRASH_LOOP_BACK_OFF,
                f"back-off {decision.delay:.3g}s restarting failed container={name} "
                f"pod={self.pod.metadata.name}_{self.pod.metadata.namespace}({self.uid})",
            )
            self.changed()
            await asyncio.sleep(decision.delay)
            attempt += 1
            current = None

    def _container(self, name: str) -> objects_pb2.Container:
        return next(c for c in self.pod.spec.containers if c.name == name)

    async def _run_attempt(
        self, container: objects_pb2.Container, rec: ContainerRecord, state: ContainerState
    ) -> tuple[ContainerState, str]:
        """Wait for the attempt's exit while probing it; kill it when a probe says so.

        Returns its final state and, if a probe ended it, why (for lastState's message).
        """
        handler = ProbeEvents(
            self._probes,
            events=self.events,
            container=container.name,
            on_event=self.changed,
        )
        prober = ContainerProber(
            container=container,
            target=Target(
                container_id=state.id,
                pid=state.pid,
                pod_ip=self.pod_ip,
                ports={p.name: p.container_port for p in container.ports if p.name},
            ),
            handler=handler,
            started_at=state.started_at,
            on_change=lambda p: self._probed(rec, p),
            resume=self._memory.probes(container.name, state.id),
        )
        handler.probes = prober.probes
        if not prober.probing:
            return await self._runtime.wait(state.id), ""
        probing = asyncio.create_task(prober.run(), name=f"probes {self.key}/{container.name}")
        waiting = asyncio.create_task(self._runtime.wait(state.id), name=f"wait {state.id}")
        try:
            await asyncio.wait({probing, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                return waiting.result(), ""
            verdict = probing.result()
            rec.ready = False
            self.events.record(
                container=container.name,
                type=EventType.NORMAL,
                reason=Reason.KILLING,
                message=f"Container {container.name} failed {verdict.kind.value.lower()} probe, "
                "will be restarted",
            )
            self.changed()
            grace = probe_grace_seconds(self.pod, container, verdict.kind)
            await stop_container(self._runtime, state.id, grace=grace, log=self._log)
            return await waiting, verdict.message
        finally:
            for task in (probing, waiting):
                task.cancel()
            await asyncio.gather(probing, waiting, return_exceptions=True)

    def _probed(self, rec: ContainerRecord, prober: ContainerProber) -> None:
        if rec.container_id != prober.target.container_id or not isinstance(rec.state, Running):
            return  # a report from an attempt that is over
        before = (rec.started, rec.ready)
        rec.started = prober.started
        rec.ready = prober.started and prober.ready
        rec.probe_message = prober.unready_message()
        if (rec.started, rec.ready) != before:
            self._remember_probes(rec)
        self.changed()

    def _remember_probes(self, rec: ContainerRecord) -> None:
        """Keep started/ready on disk, so a restarted agent resumes them instead of flapping."""
        if self.stopping:
            return  # the pod's directory is being removed
        self._memory.save_probes(
            rec.name, container_id=rec.container_id, started=rec.started, ready=rec.ready
        )

    def _grace(self) -> int:
        return grace_seconds(self.pod)

    async def _create(
        self,
        container: objects_pb2.Container,
        rec: ContainerRecord,
        attempt: int,
        backoff: Backoff,
    ) -> ContainerState:
        """Create and start one attempt, retrying (with backoff) until it runs."""
        cid = specs.container_id(self.pod, container.name, attempt)
        while True:
            image = await self._puller.pull(container, rec)
            try:
                mounts = await self._images.prepare(cid, image)
                spec = specs.build(
                    pod=self.pod,
                    container=container,
                    image=image,
                    attempt=attempt,
                    mounts=mounts,
                    state_dir=self._config.state_dir,
                    pids_limit=self._config.pids_limit,
                )
                if self._sandbox is not None:
                    spec = dataclasses.replace(spec, netns_path=self._sandbox.netns_path)
                Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
                if self._persisted is not None:
                    await self._persisted()
                self._containers.track(cid)
                await self._runtime.create(spec)
                self._event(container.name, Reason.CREATED, f"Created container {container.name}")
                state = await self._runtime.start(cid)
                self._event(container.name, Reason.STARTED, f"Started container {container.name}")
            except (RuntimeError_, specs.SpecError, ImageError, OSError) as exc:
                reason = (
                    WaitingReason.CREATE_CONTAINER_CONFIG_ERROR
                    if isinstance(exc, specs.SpecError)
                    else WaitingReason.CREATE_CONTAINER_ERROR
                )
                rec.state = Waiting(reason, str(exc))
                self._log.warning(
                    "pod.container_create_failed", container=container.name, error=str(exc)
                )
                self._event(container.name, Reason.FAILED, f"Error: {exc}", EventType.WARNING)
                self.changed()
                await self._containers.remove(cid)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            rec.restart_count = attempt
            rec.container_id = cid
            # As in Kubernetes, the image id is the running container's (not the pulled one's).
            rec.image_id = image.digest
            rec.state = Running(state.started_at or datetime.now(UTC))
            rec.started, rec.ready = initial(container)
            rec.probe_message = ""
            self._log.info("pod.container_started", container=container.name, id=cid)
            self.changed()
            return state

    def _event(
        self,
        container: str,
        reason: Reason,
        message: str,
        type: EventType = EventType.NORMAL,
    ) -> None:
        """Record an event about one container; it goes out with the next status report."""
        self.events.record(container=container, type=type, reason=reason, message=message)

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop and remove every container of this pod (by uid), then its files. Idempotent."""
        self.stopping = True
        grace = self._grace()
        mine = await self._containers.all()
        running = [s for s in mine if s.status is Status.RUNNING]
        self._log.info("pod.stopping", containers=len(mine), grace_seconds=grace)
        for state in running:
            name = state.labels.get(specs.LABEL_CONTAINER, "")
            self._event(name, Reason.KILLING, f"Stopping container {name}")
        await asyncio.gather(
            *(stop_container(self._runtime, s.id, grace=grace, log=self._log) for s in running)
        )
        for s in mine:
            await self._containers.remove(s.id)
        try:
            await self._config.networks.detach(self.pod)
        except (CniError, NetnsError, OSError) as exc:
            # The next agent start removes it (PodManager.start: detach_others).
            self._log.warning("pod.sandbox_remove_failed", error=str(exc))
        shutil.rmtree(specs.pod_dir(self._config.state_dir, self.pod), ignore_errors=True)
        self._log.info("pod.removed")

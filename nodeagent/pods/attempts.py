"""One attempt of a container: made (image, rootfs, create, start), then run under its probes.

Role: the two steps a pod worker's restart loop repeats for each attempt of a container.
- `make`: ensure the image (`pods.pull`), prepare its rootfs, build the spec, create and start
  the container; a failure shows as CreateContainerError (CreateContainerConfigError for a
  spec the pod got wrong) with the runtime's message and is retried with backoff until the
  attempt runs.
- `run`: wait for the attempt's exit while its probes (`nodeagent.probes.prober`) decide
  whether it is started and ready; a failed liveness or startup probe kills it (Killing,
  SIGTERM then SIGKILL after the probe's or the pod's grace period) and says why.
- `ended`: show the attempt's exit as the container's state and give the restart policy its
  exit; `back_off`: CrashLoopBackOff (and its BackOff event) until the next attempt.
Both share one `PodScope`: what every attempt of one pod's containers uses, built once by the
worker (which sets `sandbox` once the pod's network is attached, and `stopping` when the pod
is being removed).

Invariants:
- No container is created before the pod's desired set is on disk (`scope.persisted`), and
  its id is tracked before it is created, so a pod's containers can always be found.
- Every new attempt starts with `initial` readiness and probes afresh; a probe report from an
  attempt that is over is ignored.
- An attempt's started/ready are kept on disk as they change (not once the pod's directory is
  being removed), so a restarted agent resumes them instead of flapping readiness.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nodeagent.images import ImageError, ImageService
from nodeagent.network.sandbox import HOST_NETNS, Sandbox
from nodeagent.pods import containerspec, envsources, hooks, security, specs
from nodeagent.pods.configs import Configs
from nodeagent.pods.containers import PodContainers, terminated
from nodeagent.pods.events import EventType, PodEvents, ProbeEvents, Reason
from nodeagent.pods.fields import PodPlace
from nodeagent.pods.memory import PodMemory
from nodeagent.pods.pull import ImagePuller
from nodeagent.pods.restart import Backoff, Exit
from nodeagent.pods.security import NodePolicy
from nodeagent.pods.status import ContainerRecord, Running, Terminated, Waiting, WaitingReason
from nodeagent.pods.stop import grace_seconds, probe_grace_seconds, stop_container
from nodeagent.pods.volumes import PodVolumes
from nodeagent.probes import Handler, Target
from nodeagent.probes.prober import ContainerProber, initial
from nodeagent.runtime import ContainerRuntime, ContainerState, Mount, RuntimeError_
from pilothouse.v1 import objects_pb2

# (pod, its IP or "", its directory) -> the bind mounts of its files (`discovery.podfiles`).
PodFiles = Callable[[objects_pb2.Pod, str, Path], tuple[Mount, ...]]


@dataclass(slots=True)
class PodScope:
    """What the attempts of one pod's containers share with the pod's worker."""

    pod: objects_pb2.Pod
    runtime: ContainerRuntime
    images: ImageService
    puller: ImagePuller
    containers: PodContainers
    events: PodEvents
    memory: PodMemory
    probes: Handler
    changed: Callable[[], None]  # something a status report shows changed
    log: Any
    state_dir: Path
    pids_limit: int
    persisted: Callable[[], Awaitable[None]] | None = None
    policy: NodePolicy = dataclasses.field(default_factory=NodePolicy)  # the node's admin's
    sandbox: Sandbox | None = None  # the pod's network, once attached
    stopping: bool = False  # the pod is being removed (its directory with it)
    # Writes the pod's /etc/resolv.conf and /etc/hosts; the bind mounts of its containers.
    pod_files: PodFiles | None = None
    # The node's latest ConfigMaps and Secrets (env sources), the pod's volumes once made,
    # the pod namespaces its containers join, and the node's address (status.hostIP).
    configs: Callable[[], Configs] = Configs
    volumes: PodVolumes | None = None
    namespaces: dict[str, str] = dataclasses.field(default_factory=dict)
    host_ip: str = ""

    def place(self) -> PodPlace:
        """Where the pod runs, for its downward API fields."""
        return PodPlace(
            node_name=self.pod.spec.node_name,
            pod_ip=self.sandbox.pod_ip if self.sandbox is not None else "",
            host_ip=self.host_ip,
        )

    def event(
        self, container: str, reason: Reason, message: str, type: EventType = EventType.NORMAL
    ) -> None:
        """Record an event about one container; it goes out with the next status report."""
        self.events.record(container=container, type=type, reason=reason, message=message)


async def make(
    scope: PodScope,
    container: objects_pb2.Container,
    rec: ContainerRecord,
    *,
    attempt: int,
    backoff: Backoff,
) -> ContainerState:
    """Create and start one attempt, retrying (with backoff) until it runs."""
    pod = scope.pod
    cid = specs.container_id(pod, container.name, attempt)
    while True:
        image = await scope.puller.pull(container, rec)
        try:
            mounts = await scope.images.prepare(cid, image)
            rootfs = mounts
            try:
                sources = envsources.resolve(pod, container, scope.configs(), scope.place())
            except envsources.EnvError as exc:
                raise specs.SpecError(str(exc)) from None
            spec = specs.build(
                pod=pod,
                container=container,
                image=image,
                attempt=attempt,
                mounts=mounts,
                state_dir=scope.state_dir,
                pids_limit=scope.pids_limit,
                sources=sources,
            )
            security.check_host_users(pod)
            spec = dataclasses.replace(
                spec, seccomp=security.seccomp_of(pod, container, policy=scope.policy)
            )
            if scope.sandbox is not None:
                spec = dataclasses.replace(spec, netns_path=scope.sandbox.netns_path)
            if scope.pod_files is not None:
                pod_ip = scope.sandbox.pod_ip if scope.sandbox is not None else ""
                mounts = scope.pod_files(pod, pod_ip, specs.pod_dir(scope.state_dir, pod))
                spec = dataclasses.replace(spec, mounts=(*spec.mounts, *mounts))
            spec = containerspec.complete(
                spec,
                pod=pod,
                container=container,
                image=image,
                rootfs=rootfs,
                volumes=scope.volumes,
                namespaces=scope.namespaces,
                policy=scope.policy,
            )
            Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
            if scope.persisted is not None:
                await scope.persisted()
            scope.containers.track(cid)
            await scope.runtime.create(spec)
            scope.event(container.name, Reason.CREATED, f"Created container {container.name}")
            state = await scope.runtime.start(cid)
            scope.event(container.name, Reason.STARTED, f"Started container {container.name}")
            await _post_start(scope, container, state)
        except (RuntimeError_, specs.SpecError, ImageError, OSError) as exc:
            reason = (
                WaitingReason.CREATE_CONTAINER_CONFIG_ERROR
                if isinstance(exc, specs.SpecError)
                else WaitingReason.CREATE_CONTAINER_ERROR
            )
            rec.state = Waiting(reason, str(exc))
            scope.log.warning(
                "pod.container_create_failed", container=container.name, error=str(exc)
            )
            scope.event(container.name, Reason.FAILED, f"Error: {exc}", EventType.WARNING)
            scope.changed()
            await scope.containers.remove(cid)
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
        scope.log.info("pod.container_started", container=container.name, id=cid)
        scope.changed()
        return state


async def run(
    scope: PodScope,
    container: objects_pb2.Container,
    rec: ContainerRecord,
    state: ContainerState,
) -> tuple[ContainerState, str]:
    """Wait for the attempt's exit while probing it; kill it when a probe says so.

    Returns its final state and, if a probe ended it, why (for lastState's message).
    """
    handler = ProbeEvents(
        scope.probes,
        events=scope.events,
        container=container.name,
        on_event=scope.changed,
    )
    prober = ContainerProber(
        container=container,
        target=Target(
            container_id=state.id,
            pid=state.pid,
            pod_ip=scope.sandbox.pod_ip if scope.sandbox else "",
            ports={p.name: p.container_port for p in container.ports if p.name},
            host_network=scope.sandbox is not None and scope.sandbox.netns_path == HOST_NETNS,
        ),
        handler=handler,
        started_at=state.started_at,
        on_change=lambda p: _probed(scope, rec, p),
        resume=scope.memory.probes(container.name, state.id),
    )
    handler.probes = prober.probes
    if not prober.probing:
        return await scope.runtime.wait(state.id), ""
    key = specs.pod_key(scope.pod)
    probing = asyncio.create_task(prober.run(), name=f"probes {key}/{container.name}")
    waiting = asyncio.create_task(scope.runtime.wait(state.id), name=f"wait {state.id}")
    try:
        await asyncio.wait({probing, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            return waiting.result(), ""
        verdict = probing.result()
        rec.ready = False
        scope.event(
            container.name,
            Reason.KILLING,
            f"Container {container.name} failed {verdict.kind.value.lower()} probe, "
            "will be restarted",
        )
        scope.changed()
        grace = probe_grace_seconds(scope.pod, container, verdict.kind)
        await stop_with_hook(scope, container, state, grace=grace)
        return await waiting, verdict.message
    finally:
        for task in (probing, waiting):
            task.cancel()
        await asyncio.gather(probing, waiting, return_exceptions=True)


def ended(
    scope: PodScope, rec: ContainerRecord, state: ContainerState, *, verdict: str, attempt: int
) -> tuple[Terminated, Exit]:
    """Show a stopped attempt as the container's state (`verdict`: why a probe ended it);
    return that state and the exit its restart policy judges."""
    term = terminated(state)
    if verdict:
        term = dataclasses.replace(term, message=verdict)
    rec.state = term
    rec.ready = False
    rec.started = False
    scope.log.info(
        "pod.container_exited",
        container=rec.name,
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
    return term, Exit(code, ran_for)


def back_off(scope: PodScope, rec: ContainerRecord, term: Terminated, *, delay: float) -> None:
    """The container waits `delay` before its next attempt: CrashLoopBackOff, lastState."""
    name, meta = rec.name, scope.pod.metadata
    rec.last_terminated = term
    scope.event(
        name,
        Reason.BACK_OFF,
        f"Back-off restarting failed container {name} in pod "
        f"{meta.name}_{meta.namespace}({meta.uid})",
        EventType.WARNING,
    )
    rec.state = Waiting(
        WaitingReason.CRASH_LOOP_BACK_OFF,
        f"back-off {delay:.3g}s restarting failed container={name} "
        f"pod={meta.name}_{meta.namespace}({meta.uid})",
    )
    scope.changed()


async def _post_start(
    scope: PodScope, container: objects_pb2.Container, state: ContainerState
) -> None:
    """Run the container's postStart hook; a failed one kills it (FailedPostStartHook)."""
    failed = await hooks.post_start(
        scope.pod, container, scope.probes, _target(scope, container, state)
    )
    if failed is None:
        return
    scope.event(
        container.name,
        Reason.FAILED_POST_START_HOOK,
        f"PostStartHook failed: {failed}",
        EventType.WARNING,
    )
    await stop_container(scope.runtime, state.id, grace=grace_seconds(scope.pod), log=scope.log)


async def stop_with_hook(
    scope: PodScope, container: objects_pb2.Container, state: ContainerState, *, grace: float
) -> None:
    """The container's preStop hook (FailedPreStopHook when it fails), then SIGTERM and,
    once what is left of `grace` has passed, SIGKILL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    failed = await hooks.pre_stop(
        container, scope.probes, _target(scope, container, state), limit=grace
    )
    if failed is not None:
        scope.event(
            container.name,
            Reason.FAILED_PRE_STOP_HOOK,
            f"PreStopHook failed: {failed}",
            EventType.WARNING,
        )
    left = max(deadline - loop.time(), 0)
    await stop_container(scope.runtime, state.id, grace=left, log=scope.log)


def _target(scope: PodScope, container: objects_pb2.Container, state: ContainerState) -> Target:
    return Target(
        container_id=state.id,
        pid=state.pid,
        pod_ip=scope.sandbox.pod_ip if scope.sandbox else "",
        ports={p.name: p.container_port for p in container.ports if p.name},
        host_network=scope.sandbox is not None and scope.sandbox.netns_path == HOST_NETNS,
    )


def _probed(scope: PodScope, rec: ContainerRecord, prober: ContainerProber) -> None:
    if rec.container_id != prober.target.container_id or not isinstance(rec.state, Running):
        return  # a report from an attempt that is over
    before = (rec.started, rec.ready)
    rec.started = prober.started
    rec.ready = prober.started and prober.ready
    rec.probe_message = prober.unready_message()
    if (rec.started, rec.ready) != before and not scope.stopping:
        # Kept on disk, so a restarted agent resumes them instead of flapping (not while the
        # pod's directory is being removed).
        scope.memory.save_probes(
            rec.name, container_id=rec.container_id, started=rec.started, ready=rec.ready
        )
    scope.changed()

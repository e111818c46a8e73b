"""Probes through the pod manager (FakeRuntime, scripted probe outcomes) on virtual time.

What a user sees: a container failing its liveness probe is restarted after failureThreshold
failed checks (restartCount, lastState 137/Error with the reason); a failing readiness probe
turns the pod's Ready condition False (with the probe's words) and back True, without a
restart; a startup probe holds liveness and readiness until it passes, and restarts the
container when it never does; initialDelaySeconds and successThreshold are honoured.

Virtual time: the loop skips ahead whenever it would sleep, so periods of seconds cost
milliseconds and the counts of checks are exact.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from nodeagent.images import ImageConfig
from nodeagent.images.fake import FakeImageService
from nodeagent.pods.manager import PodManager
from nodeagent.pods.restart import BackoffConfig
from nodeagent.pods.worker import WorkerConfig
from nodeagent.probes import SUCCESS, Kind, Result, Target, Timing, failure
from nodeagent.runtime.fake import FakeRuntime
from pilothouse.v1 import objects_pb2

# -- virtual time ---------------------------------------------------------------------------


class _SkippingSelector:
    """Lets the clock jump to the next timer when nothing is left to do but wait for it.

    While work runs in threads (asyncio.to_thread), it waits for real: the thread's result
    wakes the loop. Otherwise it polls I/O for a millisecond and then jumps.
    """

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout <= 0 or self._loop.threads:
            return self._real.select(timeout)
        events = self._real.select(min(timeout, 0.001))
        if not events:
            self._loop.offset += timeout
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0
        self.threads = 0  # executor jobs not finished yet
        self._selector = _SkippingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return super().time() + self.offset

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        self.threads += 1

        def done(_: object) -> None:
            self.threads -= 1

        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(done)
        return future


def on_virtual_time(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(test(*args, **kwargs))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run


# -- scripted probes --------------------------------------------------------------------------

LIVE, READY, START = "live", "ready", "start"
KIND_OF = {LIVE: Kind.LIVENESS, READY: Kind.READINESS, START: Kind.STARTUP}


class ScriptedHandler:
    """Answers each probe (told apart by its exec command) from a script; records every check."""

    def __init__(self) -> None:
        self.script: dict[Kind, Callable[[Target], Result]] = {}
        self.checks: list[tuple[Kind, str, float]] = []  # kind, container id, loop time

    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        kind = KIND_OF[probe.exec.command[0]]
        self.checks.append((kind, target.container_id, asyncio.get_running_loop().time()))
        answer = self.script.get(kind, lambda _t: SUCCESS)
        return answer(target)

    def count(self, kind: Kind, container_id: str | None = None) -> int:
        return sum(1 for k, c, _ in self.checks if k is kind and container_id in (None, c))


def probe(
    command: str,
    *,
    period: int = 1,
    failure_threshold: int = 3,
    success_threshold: int = 0,
    initial_delay: int = 0,
    grace: int | None = None,
) -> objects_pb2.Probe:
    p = objects_pb2.Probe(
        exec=objects_pb2.ExecAction(command=[command]),
        period_seconds=period,
        failure_threshold=failure_threshold,
        success_threshold=success_threshold,
        initial_delay_seconds=initial_delay,
        timeout_seconds=1,
    )
    if grace is not None:
        p.termination_grace_period_seconds = grace
    return p


def make_pod(
    *,
    liveness: objects_pb2.Probe | None = None,
    readiness: objects_pb2.Probe | None = None,
    startup: objects_pb2.Probe | None = None,
    ignore_sigterm: bool = False,
    grace: int = 5,
) -> objects_pb2.Pod:
    annotations = {"fake.pilothouse/ignore-sigterm": "true"} if ignore_sigterm else {}
    pod = objects_pb2.Pod(
        metadata=objects_pb2.ObjectMeta(
            name="web", namespace="default", uid="uid-1", annotations=annotations
        ),
        spec=objects_pb2.PodSpec(node_name="n1"),
    )
    pod.spec.termination_grace_period_seconds = grace
    c = pod.spec.containers.add(name="app", image="busybox:stable")
    if liveness is not None:
        c.liveness_probe.CopyFrom(liveness)
    if readiness is not None:
        c.readiness_probe.CopyFrom(readiness)
    if startup is not None:
        c.startup_probe.CopyFrom(startup)
    return pod


class Node:
    def __init__(self, state_dir: Path) -> None:
        self.handler = ScriptedHandler()
        self.runtime = FakeRuntime()
        self.images = FakeImageService(
            configs={"busybox:stable": ImageConfig(entrypoint=("/bin/sh",), cmd=("-c", "x"))}
        )
        self.config = WorkerConfig(
            state_dir=state_dir,
            restart_backoff=BackoffConfig(initial=1, maximum=10, jitter=0),
            probes=self.handler,
        )
        self.manager = PodManager(runtime=self.runtime, images=self.images, config=self.config)

    async def restart_agent(self) -> None:
        """A new agent process over the same containers and state dir (re-adoption)."""
        await self.manager.close()
        self.runtime = self.runtime.restarted()
        self.manager = PodManager(runtime=self.runtime, images=self.images, config=self.config)
        await self.manager.start()

    async def __aenter__(self) -> Node:
        await self.manager.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.sync([])
        for _ in range(200):
            if not await self.runtime.list():
                break
            await asyncio.sleep(0.1)
        await self.manager.close()

    def pod(self) -> objects_pb2.Pod | None:
        pods = self.manager.pods()
        return pods[0] if pods else None

    async def until(
        self, what: str, check: Callable[[objects_pb2.Pod], bool], *, within: float = 120
    ) -> objects_pb2.Pod:
        """Wait (virtual seconds) until the pod satisfies `check`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            pod = self.pod()
            if pod is not None and pod.status.container_statuses and check(pod):
                return pod
            await asyncio.sleep(0.05)
        raise AssertionError(f"the pod never became {what}; last seen:\n{self.pod()}")


def condition(pod: objects_pb2.Pod, kind: str) -> objects_pb2.Condition:
    return next(c for c in pod.status.conditions if c.type == kind)


def status(pod: objects_pb2.Pod) -> objects_pb2.ContainerStatus:
    return pod.status.container_statuses[0]


def is_ready(pod: objects_pb2.Pod) -> bool:
    return condition(pod, "Ready").status == "True"


# -- tests ----------------------------------------------------------------------------------


def test_timing_defaults_are_kubernetes_when_the_spec_leaves_zeros() -> None:
    t = Timing.of(objects_pb2.Probe(), Kind.READINESS)
    assert (t.initial_delay, t.timeout, t.period, t.success_threshold, t.failure_threshold) == (
        0,
        1,
        10,
        1,
        3,
    )
    live = Timing.of(objects_pb2.Probe(success_threshold=5), Kind.LIVENESS)
    assert live.success_threshold == 1, "liveness must count a single success as healthy"


@on_virtual_time
async def test_liveness_failure_restarts_after_failure_threshold_checks(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        node.handler.script[Kind.LIVENESS] = lambda t: (
            failure("HTTP probe failed with statuscode: 500")
            if t.container_id.endswith("_0")
            else SUCCESS
        )
        pod = make_pod(
            liveness=probe(LIVE, period=2, failure_threshold=3, grace=1), ignore_sigterm=True
        )
        await node.manager.sync([pod])
        seen = await node.until(
            "restarted and running again",
            lambda p: status(p).restart_count == 1 and status(p).state.HasField("running"),
        )
        last = status(seen).last_state.terminated
        assert (last.exit_code, last.reason) == (137, "Error"), (
            f"the killed attempt should show exit 137 (SIGKILL after the grace period): {last}"
        )
        assert "failed liveness probe, will be restarted" in last.message, last.message
        assert "Liveness probe failed: HTTP probe failed with statuscode: 500" in last.message
        assert node.handler.count(Kind.LIVENESS, "default_web_app_0") == 3, (
            "the container was not restarted after exactly failureThreshold failed checks"
        )
        await asyncio.sleep(10)
        assert status(node.pod()).restart_count == 1, "a healthy attempt was restarted"  # type: ignore[arg-type]


@on_virtual_time
async def test_liveness_probe_uses_its_own_grace_period(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        node.handler.script[Kind.LIVENESS] = lambda t: failure("boom")
        await node.manager.sync(
            [make_pod(liveness=probe(LIVE, failure_threshold=1, grace=2), grace=600)]
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        await node.until("restarted", lambda p: status(p).restart_count >= 1, within=60)
        assert loop.time() - began < 60, "the pod's 600 s grace was used, not the probe's 2 s"


@on_virtual_time
async def test_readiness_failure_makes_the_pod_not_ready_and_back(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        healthy = True
        node.handler.script[Kind.READINESS] = lambda t: (
            SUCCESS if healthy else failure("HTTP probe failed with statuscode: 503")
        )
        await node.manager.sync([make_pod(readiness=probe(READY, failure_threshold=2))])
        ready = await node.until("Ready", is_ready)
        assert status(ready).ready and status(ready).started
        became_ready = condition(ready, "Ready").last_transition_time.ToDatetime()

        healthy = False
        unready = await node.until("not Ready", lambda p: not is_ready(p))
        message = condition(unready, "Ready").message
        assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in message, (
            f"describe pod would not say why the pod is not ready: {message!r}"
        )
        assert condition(unready, "ContainersReady").status == "False"
        assert not status(unready).ready
        assert status(unready).state.HasField("running"), "readiness failure stopped the container"
        assert status(unready).restart_count == 0, "readiness failure restarted the container"
        fell = condition(unready, "Ready").last_transition_time.ToDatetime()
        assert fell > became_ready, "lastTransitionTime did not move when Ready changed"

        healthy = True
        back = await node.until("Ready again", is_ready)
        assert condition(back, "Ready").message == ""
        assert status(back).restart_count == 0


@on_virtual_time
async def test_readiness_needs_success_threshold_passes(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        await node.manager.sync([make_pod(readiness=probe(READY, success_threshold=3))])
        await node.until("Ready", is_ready)
        assert node.handler.count(Kind.READINESS) == 3, (
            "the pod became Ready before successThreshold consecutive passes"
        )


@on_virtual_time
async def test_initial_delay_is_honoured(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await node.manager.sync([make_pod(readiness=probe(READY, initial_delay=30))])
        running = await node.until("running", lambda p: status(p).state.HasField("running"))
        assert not is_ready(running), "without a passed readiness probe the pod must not be Ready"
        await node.until("Ready", is_ready, within=120)
        first = min(t for k, _, t in node.handler.checks if k is Kind.READINESS)
        assert first - began >= 30, "the readiness probe ran before initialDelaySeconds"


@on_virtual_time
async def test_startup_probe_holds_liveness_and_readiness_until_it_passes(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        passes_after = 4
        node.handler.script[Kind.STARTUP] = lambda t: (
            SUCCESS
            if node.handler.count(Kind.STARTUP) > passes_after
            else failure("dial tcp 127.0.0.1:8080: connect: connection refused")
        )
        await node.manager.sync(
            [
                make_pod(
                    startup=probe(START, failure_threshold=10),
                    liveness=probe(LIVE),
                    readiness=probe(READY),
                )
            ]
        )
        waiting = await node.until(
            "running, not started",
            lambda p: status(p).state.HasField("running") and node.handler.count(Kind.STARTUP) >= 2,
        )
        assert not status(waiting).started and not status(waiting).ready
        assert "Startup probe failed: dial tcp" in condition(waiting, "Ready").message
        started = await node.until("Ready", is_ready)
        assert status(started).started
        startup_done = max(t for k, _, t in node.handler.checks if k is Kind.STARTUP)
        others = [t for k, _, t in node.handler.checks if k is not Kind.STARTUP]
        assert others and min(others) >= startup_done, (
            "liveness or readiness ran before the startup probe passed"
        )
        assert status(started).restart_count == 0


@on_virtual_time
async def test_startup_probe_that_never_passes_restarts_the_container(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        node.handler.script[Kind.STARTUP] = lambda t: failure("still booting")
        await node.manager.sync(
            [make_pod(startup=probe(START, failure_threshold=3), liveness=probe(LIVE))]
        )
        seen = await node.until("restarted", lambda p: status(p).restart_count >= 1)
        assert (
            "failed startup probe, will be restarted" in status(seen).last_state.terminated.message
        )
        assert node.handler.count(Kind.LIVENESS) == 0, "liveness ran though startup never passed"


@on_virtual_time
async def test_without_readiness_probe_a_started_container_is_ready(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        await node.manager.sync([make_pod(liveness=probe(LIVE))])
        pod = await node.until("Ready", is_ready)
        assert status(pod).ready and status(pod).started


@on_virtual_time
async def test_on_failure_restarts_a_container_killed_by_its_liveness_probe(
    tmp_path: Path,
) -> None:
    async with Node(tmp_path) as node:
        node.handler.script[Kind.LIVENESS] = lambda t: (
            failure("boom") if t.container_id.endswith("_0") else SUCCESS
        )
        pod = make_pod(liveness=probe(LIVE, failure_threshold=1))
        pod.spec.restart_policy = "OnFailure"
        await node.manager.sync([pod])
        seen = await node.until("restarted", lambda p: status(p).restart_count == 1)
        assert seen.status.phase == "Running"


@on_virtual_time
async def test_agent_restart_keeps_a_ready_pod_ready(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        await node.manager.sync([make_pod(readiness=probe(READY, period=5))])
        before = await node.until("Ready", is_ready)
        await node.restart_agent()
        adopted = node.pod()
        assert adopted is not None and is_ready(adopted), (
            "a restarted agent reported a ready pod as not Ready (readiness would flap)"
        )
        checks = node.handler.count(Kind.READINESS)
        await asyncio.sleep(12)
        after = node.pod()
        assert after is not None and is_ready(after)
        assert node.handler.count(Kind.READINESS) > checks, "the adopted container is not probed"
        assert status(after).container_id == status(before).container_id
        assert status(after).restart_count == 0
        assert (
            condition(after, "Ready").last_transition_time
            == condition(before, "Ready").last_transition_time
        ), "the agent restart reset Ready's lastTransitionTime (minReadySeconds starts over)"


@on_virtual_time
async def test_agent_restart_keeps_an_unready_pod_unready_until_it_passes(tmp_path: Path) -> None:
    async with Node(tmp_path) as node:
        healthy = False
        node.handler.script[Kind.READINESS] = lambda t: SUCCESS if healthy else failure("503")
        await node.manager.sync([make_pod(readiness=probe(READY, period=5))])
        await node.until("running", lambda p: status(p).state.HasField("running"))
        await node.restart_agent()
        adopted = node.pod()
        assert adopted is not None and not is_ready(adopted)
        healthy = True
        await node.until("Ready", is_ready)

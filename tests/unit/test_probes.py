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
from pathlib import Path

from nodeagent.probes import SUCCESS, Kind, Timing, failure
from pilothouse.v1 import objects_pb2
from tests.unit.probes_support import (
    LIVE,
    READY,
    START,
    Node,
    condition,
    is_ready,
    make_pod,
    probe,
    status,
)
from tests.unit.virtual_time import on_virtual_time


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

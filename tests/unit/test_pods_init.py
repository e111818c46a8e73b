"""Init containers and sidecars on an agent over the fake runtime: order, retries, failure,
what `get pods` shows meanwhile, and which container stops last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse import manifests
from pilothouse.cli.podstatus import pod_status
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.pods_support import Node, make_pod


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    await n.close()


def with_init(*names: str, sidecar: str = "", restart_policy: str = "") -> objects_pb2.Pod:
    pod = make_pod(restart_policy=restart_policy)
    if sidecar:
        side = factories.container(name=sidecar)
        side.restart_policy = "Always"
        pod.spec.init_containers.append(side)
    for name in names:
        pod.spec.init_containers.append(factories.container(name=name))
    manifests.set_defaults(pod)
    return pod


def shown(pod: objects_pb2.Pod | None) -> str:
    """`get pods` STATUS."""
    return pod_status(pod)[0] if pod is not None else ""


def recorded_kills(node: Node) -> list[tuple[str, int]]:
    """Every kill the runtime is asked for from now on: (container id, signal)."""
    kills: list[tuple[str, int]] = []
    kill = node.runtime.kill

    async def recording(container_id: str, *, signal: int = 15) -> None:
        kills.append((container_id, signal))
        await kill(container_id, signal=signal)

    node.runtime.kill = recording  # type: ignore[method-assign]
    return kills


async def stop_every_pod(node: Node, *, within: float) -> None:
    """Hand the agent no pods, then give it up to `within` seconds to remove their containers
    (the caller asserts what it needs of the outcome)."""
    await node.manager.sync([])
    for _ in range(round(within / 0.01)):
        if not node.runtime.node.containers:
            return
        await asyncio.sleep(0.01)


def created(node: Node) -> list[str]:
    """Container names in the order the runtime made them."""
    made = sorted(node.runtime.node.containers.values(), key=lambda c: c.pid)
    return [c.spec.labels["pilothouse.container.name"] for c in made]


async def test_init_containers_run_in_order_before_the_main_container(node: Node) -> None:
    pod = with_init("first", "second")
    node.runtime.set_knobs("default_web_first_0", run_for=0.3)
    node.runtime.set_knobs("default_web_second_0", run_for=0.05)
    await node.sync(pod)
    seen = await node.until("Init:0/2", lambda p: shown(p) == "Init:0/2")
    assert seen is not None and seen.status.phase == "Pending"
    assert seen.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    initialized = {c.type: c for c in seen.status.conditions}["Initialized"]
    assert initialized.status == "False" and "first second" in initialized.message
    await node.until("Running", lambda p: shown(p) == "Running")
    assert created(node) == ["first", "second", "app"]
    final = node.pod()
    assert final is not None
    assert [s.state.terminated.reason for s in final.status.init_container_statuses] == [
        "Completed",
        "Completed",
    ]


async def test_a_failing_init_container_blocks_the_main_one_and_is_retried(node: Node) -> None:
    pod = with_init("setup")
    for attempt in range(3):
        node.runtime.set_knobs(f"default_web_setup_{attempt}", run_for=0.01, exit_code=1)
    node.runtime.set_knobs("default_web_setup_3", run_for=0.01, exit_code=0)
    await node.sync(pod)
    await node.until("Init:CrashLoopBackOff", lambda p: shown(p) == "Init:CrashLoopBackOff")
    assert "app" not in created(node), "the main container started before init succeeded"
    await node.until("Running", lambda p: shown(p) == "Running")
    setup = node.pod().status.init_container_statuses[0]  # type: ignore[union-attr]
    assert setup.restart_count == 3


async def test_under_never_a_failed_init_container_fails_the_pod(node: Node) -> None:
    pod = with_init("setup", restart_policy="Never")
    node.runtime.set_knobs("default_web_setup_0", run_for=0.01, exit_code=2)
    await node.sync(pod)
    seen = await node.until("Failed", lambda p: p is not None and p.status.phase == "Failed")
    assert shown(seen) == "Init:Error"
    assert created(node) == ["setup"]


async def test_a_sidecar_starts_first_and_stops_last(node: Node) -> None:
    pod = with_init("setup", sidecar="proxy")
    node.runtime.set_knobs("default_web_setup_0", run_for=0.05)
    await node.sync(pod)
    seen = await node.until("Running", lambda p: shown(p) == "Running")
    assert created(node) == ["proxy", "setup", "app"]
    assert pod_status(seen)[1] == 2, "READY should count the sidecar"  # type: ignore[arg-type]
    kills = recorded_kills(node)
    await stop_every_pod(node, within=5.0)
    killed = [container_id for container_id, _ in kills]
    assert not node.runtime.node.containers, "the pod's containers were not removed"
    assert killed[0] == "default_web_app_0", f"stopped in the wrong order: {killed}"
    assert killed[-1] == "default_web_proxy_0", f"the sidecar did not stop last: {killed}"


async def test_logs_name_the_init_containers(node: Node) -> None:
    pod = with_init("setup")
    pod.spec.containers.append(factories.container(name="other"))
    node.runtime.set_knobs("default_web_setup_0", run_for=0.01)
    await node.sync(pod)
    await node.until("Running", lambda p: shown(p) == "Running")
    with pytest.raises(Exception, match=r"or one of the init containers: \[setup\]"):
        node.manager.log_path(namespace="default", pod="web")


async def test_pre_stop_runs_before_sigterm_and_a_failure_is_reported(node: Node) -> None:
    pod = make_pod(grace=2)
    pod.spec.containers[0].lifecycle.pre_stop.exec.command[:] = ["/bin/drain"]
    manifests.set_defaults(pod)
    checked: list[str] = []

    class Hooks:
        async def check(self, probe, target, *, time_limit):  # type: ignore[no-untyped-def]
            from nodeagent.probes import failure

            checked.append(" ".join(probe.exec.command))
            return failure("drain: exit 1")

    await node.sync(pod)
    await node.until("Running", lambda p: shown(p) == "Running")
    worker = next(iter(node.manager._workers.values()))
    worker._scope.probes = Hooks()  # the pod's exec handler (the fake runtime runs nothing)
    kills = recorded_kills(node)
    await stop_every_pod(node, within=3.0)
    signals = [signal for _, signal in kills]
    assert checked == ["/bin/drain"], "the preStop hook did not run"
    assert signals and signals[0] == 15, "the container was not sent SIGTERM after the hook"
    events = [e.reason for e in worker.events.drain()]
    assert "FailedPreStopHook" in events, events

"""PodManager over FakeRuntime + FakeImageService: what `get pods` would show for each case
(the agent under test and its pod are tests.unit.pods_support)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodeagent.pods import specs
from nodeagent.pods.manager import EventType, PodEvent
from nodeagent.runtime import Status
from nodeagent.state import DesiredPods
from tests.unit.pods_support import Node, make_pod, running, state_of
from tests.unit.waiting import eventually


async def _no_containers(node: Node) -> object:
    found = await node.runtime.list()
    return not found or [c.id for c in found]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    await n.close()


async def test_sync_runs_the_pod_with_kubernetes_status(node: Node) -> None:
    rejected = await node.sync(make_pod())
    assert rejected == {}
    pod = await node.until("Running", running)
    assert pod is not None
    cs = pod.status.container_statuses[0]
    assert cs.ready and cs.started and cs.restart_count == 0
    assert cs.image_id.startswith("sha256:"), "the pod status would show no image id"
    assert cs.container_id == "default_web_app_0"
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert pod.status.host_ip == "10.0.0.7"
    assert pod.status.start_time.seconds > 0
    [container] = await node.runtime.list()
    spec = node.runtime.node.containers[container.id].spec
    assert spec.hostname == "web", "the container would not have the pod's hostname"
    assert spec.args == ("/bin/sh", "-c", "sleep 1d"), "image ENTRYPOINT+CMD were not used"
    assert "A=image" in spec.env and "HOSTNAME=web" in spec.env
    assert spec.log_path == str(node.state_dir / "pods/default_web_uid-1/app/0.log")
    assert spec.labels[specs.LABEL_UID] == "uid-1"
    assert spec.labels[specs.LABEL_ATTEMPT] == "0"


async def test_resync_of_the_same_set_changes_nothing(node: Node) -> None:
    await node.sync(make_pod())
    await node.until("Running", running)
    before = await node.runtime.list()
    for _ in range(3):
        assert await node.sync(make_pod()) == {}
    await asyncio.sleep(0.05)
    after = await node.runtime.list()
    assert [(c.id, c.pid) for c in after] == [(c.id, c.pid) for c in before], (
        "re-sending the same pod set restarted or duplicated containers"
    )


async def test_removed_pod_is_stopped_and_deleted(node: Node) -> None:
    events: list[PodEvent] = []

    async def collect() -> None:
        async for ev in node.manager.watch():
            events.append(ev)

    await node.sync(make_pod(), make_pod("db", uid="uid-2"))
    await node.until("Running", running)
    watcher = asyncio.create_task(collect())
    try:
        await node.sync(make_pod("db", uid="uid-2"))
        await node.until("gone", lambda p: p is None)
        await eventually(
            lambda: any(e.type is EventType.REMOVED for e in events),
            "watchers were not told that pod web went away",
            within=30,
        )
        remaining = [c.labels[specs.LABEL_POD] for c in await node.runtime.list()]
        assert remaining == ["db"], f"containers left after removing pod web: {remaining}"
        assert all(not k.startswith("default_web") for k in node.images.prepared)
        assert not (node.state_dir / "pods/default_web_uid-1").exists()
        removed = [e.pod.metadata.name for e in events if e.type is EventType.REMOVED]
        assert removed == ["web"], "watchers were not told that pod web went away"
    finally:
        watcher.cancel()


async def test_pod_that_ignores_sigterm_is_killed_after_the_grace_period(node: Node) -> None:
    await node.sync(make_pod(knobs={"ignore-sigterm": "true"}, grace=0))
    await node.until("Running", running)
    await node.sync()
    await eventually(
        lambda: _no_containers(node), "a container ignoring SIGTERM was left running", within=30
    )


async def test_changed_pod_is_replaced(node: Node) -> None:
    await node.sync(make_pod())
    await node.until("Running", running)
    await node.sync(make_pod(image="busybox:1.36"))
    pod = await node.until(
        "running the new image",
        lambda p: running(p) and p.spec.containers[0].image == "busybox:1.36",
    )
    assert pod is not None
    containers = await node.runtime.list()
    hashes = {c.labels[specs.LABEL_SPEC_HASH] for c in containers}
    assert hashes == {specs.spec_hash(make_pod(image="busybox:1.36"))}, (
        "the old pod's container is still there after its spec changed"
    )
    await node.sync(make_pod(uid="uid-9", image="busybox:1.36"))
    await node.until("the new uid", lambda p: running(p) and p.metadata.uid == "uid-9")
    assert {c.labels[specs.LABEL_UID] for c in await node.runtime.list()} == {"uid-9"}


async def test_always_restarts_with_backoff_and_shows_crash_loop(node: Node) -> None:
    seen: set[str] = set()

    async def collect() -> None:
        async for ev in node.manager.watch():
            seen.add(state_of(ev.pod))

    watcher = asyncio.create_task(collect())
    try:
        await node.sync(make_pod(knobs={"run-for": "0.01", "exit-code": "3"}))
        pod = await node.until(
            "restarted 3 times",
            lambda p: p is not None and p.status.container_statuses[0].restart_count >= 3,
        )
    finally:
        watcher.cancel()
    assert pod is not None
    cs = pod.status.container_statuses[0]
    assert cs.last_state.terminated.exit_code == 3
    assert cs.last_state.terminated.reason == "Error"
    assert cs.last_state.terminated.HasField("finished_at")
    assert "waiting:CrashLoopBackOff" in seen, f"CrashLoopBackOff never shown; saw {seen}"
    assert pod.status.phase == "Running"
    ids = sorted(c.id for c in await node.runtime.list())
    assert len(ids) <= 2, f"old attempts pile up in the runtime: {ids}"


async def test_on_failure_exit_zero_completes(node: Node) -> None:
    await node.sync(make_pod(restart_policy="OnFailure", knobs={"run-for": "0.01"}))
    pod = await node.until("Succeeded", lambda p: p is not None and p.status.phase == "Succeeded")
    assert pod is not None
    cs = pod.status.container_statuses[0]
    assert cs.state.terminated.reason == "Completed"
    assert cs.state.terminated.exit_code == 0
    assert cs.restart_count == 0, "a completed OnFailure container was restarted"
    ready = {c.type: c.status for c in pod.status.conditions}["Ready"]
    assert ready == "False"


async def test_on_failure_restarts_a_failure(node: Node) -> None:
    await node.sync(
        make_pod(restart_policy="OnFailure", knobs={"run-for": "0.01", "exit-code": "1"})
    )
    await node.until(
        "restarted", lambda p: p is not None and p.status.container_statuses[0].restart_count >= 1
    )


async def test_never_fails_without_restart(node: Node) -> None:
    await node.sync(make_pod(restart_policy="Never", knobs={"run-for": "0.01", "exit-code": "2"}))
    pod = await node.until("Failed", lambda p: p is not None and p.status.phase == "Failed")
    assert pod is not None
    cs = pod.status.container_statuses[0]
    assert (cs.state.terminated.exit_code, cs.state.terminated.reason) == (2, "Error")
    await asyncio.sleep(0.2)
    assert node.pod().status.container_statuses[0].restart_count == 0  # type: ignore[union-attr]


async def test_oom_is_reported(node: Node) -> None:
    await node.sync(make_pod(restart_policy="Never", knobs={"oom": "true", "run-for": "0.01"}))
    pod = await node.until("Failed", lambda p: p is not None and p.status.phase == "Failed")
    assert pod is not None
    assert pod.status.container_statuses[0].state.terminated.reason == "OOMKilled"


async def test_start_error_shows_create_container_error_with_runtime_message(node: Node) -> None:
    message = 'exec: "nope": executable file not found in $PATH'
    await node.sync(make_pod(knobs={"start-error": message}))
    pod = await node.until(
        "CreateContainerError", lambda p: state_of(p) == "waiting:CreateContainerError"
    )
    assert pod is not None
    assert pod.status.phase == "Pending"
    assert message in pod.status.container_statuses[0].state.waiting.message


async def test_pull_error_backs_off_then_recovers(node: Node) -> None:
    node.images.pull_errors["busybox:stable"] = "manifest unknown: manifest unknown"
    await node.sync(make_pod())
    pod = await node.until("ImagePullBackOff", lambda p: state_of(p) == "waiting:ImagePullBackOff")
    assert pod is not None
    assert "manifest unknown" in pod.status.container_statuses[0].state.waiting.message, (
        "the registry's message is not shown to the user"
    )
    assert pod.status.phase == "Pending"
    del node.images.pull_errors["busybox:stable"]
    await node.until("Running after the registry recovered", running)


async def test_invalid_pods_are_rejected_with_a_reason(node: Node) -> None:
    bad = make_pod("bad")
    bad.spec.containers[0].image = ""
    nouid = make_pod("nouid", uid="")
    rejected = await node.sync(make_pod(), bad, nouid)
    assert set(rejected) == {"default/bad", "default/nouid"}
    assert "image" in rejected["default/bad"]
    await node.until("Running", running)


async def test_command_replaces_entrypoint_and_args_replace_cmd(node: Node) -> None:
    await node.sync(
        make_pod("a", uid="a", command=("/bin/echo",)),
        make_pod("b", uid="b", args=("-c", "exit 0")),
        make_pod("c", uid="c", command=("/bin/env",), args=("X",)),
    )
    for name in "abc":
        await node.until("Running", running, name=name)
    args = {
        c.labels[specs.LABEL_POD]: node.runtime.node.containers[c.id].spec.args
        for c in await node.runtime.list()
    }
    assert args == {
        "a": ("/bin/echo",),
        "b": ("/bin/sh", "-c", "exit 0"),
        "c": ("/bin/env", "X"),
    }


async def test_restarted_agent_readopts_without_restarting(node: Node) -> None:
    node.runtime.set_knobs("default_web_app_0", run_for=0.01, exit_code=7)
    await node.sync(make_pod())
    before = await node.until(
        "running again after one crash",
        lambda p: running(p) and p.status.container_statuses[0].restart_count == 1,
    )
    assert before is not None
    pid = (await node.runtime.state("default_web_app_1")).pid
    await node.restart_agent()
    after = node.pod()
    assert after is not None, "the restarted agent forgot the pod"
    cs = after.status.container_statuses[0]
    assert cs.restart_count == 1, f"restart count changed across an agent restart: {cs}"
    assert cs.state.HasField("running")
    assert cs.last_state.terminated.exit_code == 7
    await asyncio.sleep(0.1)
    state = await node.runtime.state("default_web_app_1")
    assert (state.status, state.pid) == (Status.RUNNING, pid), "the container was restarted"
    assert len(await node.runtime.list()) == 2  # the running attempt and the previous one


async def test_container_that_exited_while_agent_was_down_reports_its_exit_code(
    node: Node,
) -> None:
    await node.sync(make_pod(restart_policy="Never", knobs={"run-for": "0.3", "exit-code": "42"}))
    await node.until("Running", running)
    await node.manager.close()
    await asyncio.sleep(0.4)  # the container ends while no agent watches it
    node.runtime = node.runtime.restarted()
    node.manager = node._manager()
    await node.manager.start()
    pod = await node.until("Failed", lambda p: p is not None and p.status.phase == "Failed")
    assert pod is not None
    assert pod.status.container_statuses[0].state.terminated.exit_code == 42


async def test_orphan_containers_are_removed_on_start(node: Node) -> None:
    await node.sync(make_pod())
    await node.until("Running", running)
    await node.manager.close()
    # The node's recorded set no longer has the pod (it left the set while no agent ran).
    DesiredPods(node.state_dir).save([])
    node.runtime = node.runtime.restarted()
    node.manager = node._manager()
    await node.manager.start()
    await eventually(
        lambda: _no_containers(node), "a container no pod wants kept running", within=30
    )


async def test_logs_of_the_current_and_previous_attempt(node: Node) -> None:
    await node.sync(make_pod())
    await node.until("Running", running)
    path = node.manager.log_path(namespace="default", pod="web")
    path.write_bytes(
        b"2024-01-01T00:00:00.000000000Z stdout F hello\n"
        b"2024-01-01T00:00:00.000000001Z stderr P wor\n"
        b"2024-01-01T00:00:00.000000002Z stderr F ld\n"
    )
    got = b"".join([c async for c in node.manager.logs(namespace="default", pod="web")])
    assert got == b"hello\nworld\n"
    tail = b"".join(
        [c async for c in node.manager.logs(namespace="default", pod="web", tail_lines=1)]
    )
    assert tail == b"world\n", "tail 1 should give the last whole line"

    async def follow() -> list[bytes]:
        return [c async for c in node.manager.logs(namespace="default", pod="web", follow=True)]

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    with path.open("ab") as f:
        f.write(b"2024-01-01T00:00:01.000000000Z stdout F later\n")
    await asyncio.sleep(0.3)
    await node.runtime.kill("default_web_app_0", signal=9)
    got = await asyncio.wait_for(follower, 5)
    assert b"".join(got).endswith(b"later\n"), f"follow missed a new line: {got}"

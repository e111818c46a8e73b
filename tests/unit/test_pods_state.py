"""The agent survives its own state (issue 12): a missing or unreadable record of the node's
desired pods never kills a container; the control plane's next push decides. An orphan's
clean-up never takes the sandbox of a live pod with the same uid, and a fenced push ends the
pods that left the set at once (PodManager over FakeRuntime, tests.unit.pods_support)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from nodeagent.network.sandbox import Mode, Sandbox, sandbox_id
from nodeagent.pods.manager import PodManager
from nodeagent.pods.worker import WorkerConfig
from nodeagent.runtime import Status
from nodeagent.state import DesiredPods
from nodeagent.state.quarantine import quarantined
from pilothouse.v1 import objects_pb2
from tests.unit.pods_support import FAST, Node, make_pod, running
from tests.unit.waiting import eventually

GRACE = 300  # s: the grace period of the pod a fenced push removes


class FakeNetworks:
    """The sandboxes a node holds (by sandbox id), as PodNetworks would make and remove them."""

    mode = Mode.CNI

    def __init__(self) -> None:
        self.attached: set[str] = set()

    async def attach(self, pod: objects_pb2.Pod) -> Sandbox:
        self.attached.add(sandbox_id(pod))
        return Sandbox(netns_path=f"/run/netns/{sandbox_id(pod)}", pod_ip="10.1.0.2")

    async def detach(self, pod: objects_pb2.Pod) -> None:
        self.attached.discard(sandbox_id(pod))

    async def detach_others(self, pods: Iterable[objects_pb2.Pod]) -> list[str]:
        keep = {sandbox_id(p) for p in pods}
        stale = sorted(self.attached - keep)
        self.attached -= set(stale)
        return stale


class NetworkedNode(Node):
    """A Node whose pods get (fake) sandboxes that outlive an agent restart."""

    def __init__(self, state_dir: Path) -> None:
        self.networks = FakeNetworks()
        super().__init__(state_dir)

    def _manager(self) -> PodManager:
        config = WorkerConfig(
            state_dir=self.state_dir,
            host_ip="10.0.0.7",
            restart_backoff=FAST,
            image_backoff=FAST,
            networks=self.networks,  # type: ignore[arg-type]
        )
        return PodManager(runtime=self.runtime, images=self.images, config=config)

    async def stop_agent(self) -> None:
        await self.manager.close()
        self.runtime = self.runtime.restarted()
        self.manager = self._manager()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NetworkedNode]:
    n = NetworkedNode(tmp_path)
    yield n
    await n.close()


async def _pids(node: Node) -> dict[str, int]:
    return {c.id: c.pid for c in await node.runtime.list() if c.status is Status.RUNNING}


async def test_unreadable_desired_set_is_quarantined_and_kills_nothing(
    node: NetworkedNode,
) -> None:
    pods = [make_pod(), make_pod("db", uid="uid-2")]
    await node.sync(*pods)
    await node.until("Running", running)
    await node.until("Running", running, name="db")
    before = await _pids(node)
    assert len(before) == 2
    await node.stop_agent()
    desired = node.state_dir / "desired.json"
    desired.write_bytes(b'{"pods": [\n{"metadata": \x00\xff garbage')
    await node.manager.start()  # must not raise
    await asyncio.sleep(0.2)  # what a wrong start-up would have stopped by now, it stops
    assert await _pids(node) == before, "a container was stopped while the desired set was unknown"
    assert node.networks.attached == {sandbox_id(p) for p in pods}, (
        "a sandbox was removed while the desired set was unknown"
    )
    assert node.manager.pods() == [], "pods are reported before the desired set is known"
    assert quarantined(desired), "the unreadable desired.json was not moved aside"

    await node.manager.sync(pods)  # the control plane pushes the same set again
    web = await node.until("re-adopted", running)
    assert web is not None and web.status.container_statuses[0].restart_count == 0
    await node.until("re-adopted", running, name="db")
    assert await _pids(node) == before, "re-adoption restarted or duplicated a container"
    assert node.networks.attached == {sandbox_id(p) for p in pods}


async def test_missing_desired_set_waits_for_the_push_then_removes_what_left(
    node: NetworkedNode,
) -> None:
    await node.sync(make_pod(), make_pod("db", uid="uid-2"))
    await node.until("Running", running)
    await node.until("Running", running, name="db")
    await node.stop_agent()
    (node.state_dir / "desired.json").unlink()
    await node.manager.start()
    await asyncio.sleep(0.2)
    assert len(await _pids(node)) == 2, "a container was stopped before the control plane spoke"

    await node.manager.sync([make_pod("db", uid="uid-2")])

    async def only_db() -> object:
        found = list(await _pids(node))
        return found == ["default_db_app_0"] or found

    await eventually(only_db, "the removed pod's container kept running", within=30)
    assert list(await _pids(node)) == ["default_db_app_0"], (
        "the pod the pushed set no longer holds kept running (or the kept one was restarted)"
    )
    assert node.networks.attached == {sandbox_id(make_pod("db", uid="uid-2"))}


async def test_orphan_clean_up_leaves_the_sandbox_of_the_live_pod_with_its_uid(
    node: NetworkedNode,
) -> None:
    await node.sync(make_pod())
    await node.until("Running", running)
    await node.stop_agent()
    # While no agent ran, the pod (same uid) changed: its old containers are an orphan.
    changed = make_pod(image="busybox:2")
    DesiredPods(node.state_dir).save([changed])
    await node.manager.start()
    pod = await node.until(
        "running its new spec",
        lambda p: running(p) and p.spec.containers[0].image == "busybox:2",
    )
    assert pod is not None

    async def one_container() -> object:
        found = [c.id for c in await node.runtime.list()]
        return len(found) == 1 or found

    await eventually(one_container, "the orphan's container was not removed", within=30)
    assert node.networks.attached == {sandbox_id(changed)}, (
        "the orphan's clean-up removed the sandbox of the live pod with the same uid"
    )


async def test_fenced_push_ends_removed_pods_at_once_and_answers_after(
    node: NetworkedNode,
) -> None:
    slow = make_pod(knobs={"ignore-sigterm": "true"}, grace=GRACE)
    await node.sync(slow, make_pod("db", uid="uid-2"))
    await node.until("Running", running)
    try:
        async with asyncio.timeout(GRACE / 5):  # a push that waited the grace out: far later
            await node.manager.sync([make_pod("db", uid="uid-2")], fence=True)
    except TimeoutError:
        pytest.fail(f"a fenced push waited for the removed pod's {GRACE:g} s grace period")
    left = [c.id for c in await node.runtime.list() if c.status is not Status.STOPPED]
    assert left == ["default_db_app_0"], (
        f"a fenced push answered while a removed pod still ran: {left}"
    )

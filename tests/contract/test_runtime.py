"""One ContainerRuntime contract, run against every implementation (fake and real runc).

Each implementation is driven through a `Flavor` that builds specs for the behaviours the
suite needs (sleep until killed, exit with a code, fail to start), so the assertions are the
same for both: what a pod worker relying on the runtime would observe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.runtime import (
    ContainerNotFound,
    ContainerRuntime,
    ContainerSpec,
    RuntimeError_,
    Status,
    logs,
)
from nodeagent.runtime.fake import FakeRuntime, knob_labels


@dataclass
class Flavor:
    runtime: ContainerRuntime
    sleeper: Callable[[str], ContainerSpec]  # runs until killed
    exiter: Callable[[str, int], ContainerSpec]  # exits with the code, quickly
    broken: Callable[[str], ContainerSpec]  # its command does not exist
    reopen: Callable[[], ContainerRuntime]  # a new runtime object over the same node
    # Until a sleeper has set up its signal handling (a real process needs a moment).
    settled: Callable[[str], Awaitable[None]]
    talker: Callable[[str, str], ContainerSpec]  # prints "hello" and "world" to the log path


def _fake_flavor() -> Flavor:
    rt = FakeRuntime()

    def spec(cid: str, **knobs: object) -> ContainerSpec:
        return ContainerSpec(
            id=cid,
            hostname="pod",
            rootfs="/nonexistent",
            labels={"app": "t", **knob_labels(**knobs)},
        )

    return Flavor(
        runtime=rt,
        sleeper=lambda cid: spec(cid, run_for=None),
        exiter=lambda cid, code: spec(cid, run_for=0.05, exit_code=code),
        broken=lambda cid: spec(cid, start_error='exec: "/no/such/cmd": no such file or directory'),
        reopen=rt.restarted,
        settled=_nothing_to_wait_for,
        talker=lambda cid, log: dataclasses.replace(
            spec(cid, run_for=0.05, output=("hello", "world")), log_path=log
        ),
    )


async def _nothing_to_wait_for(_: str) -> None:
    return None


@pytest.fixture(params=["fake", "runc"])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    if request.param == "fake":
        return _fake_flavor()
    return request.getfixturevalue("runc_flavor")


def _cid() -> str:
    return "ct-" + uuid.uuid4().hex[:10]


async def test_created_container_starts_and_runs(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.sleeper(_cid())
    created = await rt.create(spec)
    assert created.status is Status.CREATED, "a created container should not run yet"
    started = await rt.start(spec.id)
    assert started.status is Status.RUNNING, "a started container should be running"
    state = await rt.state(spec.id)
    assert state.status is Status.RUNNING
    assert state.pid > 0, "a running container should report its process id"
    assert state.started_at is not None, "a running container should say when it started"
    assert state.labels.get("app") == "t", "labels given at create should come back"
    await rt.delete(spec.id)


async def test_wait_returns_the_exit_code(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.exiter(_cid(), 3)
    await rt.create(spec)
    await rt.start(spec.id)
    final = await asyncio.wait_for(rt.wait(spec.id), 20)
    assert final.status is Status.STOPPED
    assert final.exit_code == 3, "the pod status would show the wrong exit code"
    assert not final.oom_killed
    assert final.finished_at is not None
    state = await rt.state(spec.id)
    assert state.status is Status.STOPPED and state.exit_code == 3, "state() should agree"
    await rt.delete(spec.id)


async def test_kill_ends_a_running_container(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.sleeper(_cid())
    await rt.create(spec)
    await rt.start(spec.id)
    await rt.kill(spec.id, signal=9)
    final = await asyncio.wait_for(rt.wait(spec.id), 20)
    assert final.status is Status.STOPPED
    assert final.exit_code == 137, "a SIGKILLed container should exit with 128+9"
    await rt.kill(spec.id, signal=9)  # killing a stopped container is harmless
    await rt.delete(spec.id)


async def test_sigterm_exit_code(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.sleeper(_cid())
    await rt.create(spec)
    await rt.start(spec.id)
    await flavor.settled(spec.id)
    await rt.kill(spec.id)
    final = await asyncio.wait_for(rt.wait(spec.id), 20)
    assert final.exit_code == 143, "a container ended by SIGTERM should exit with 128+15"
    await rt.delete(spec.id)


async def test_delete_is_idempotent_and_removes_the_container(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.sleeper(_cid())
    await rt.create(spec)
    await rt.start(spec.id)
    await rt.delete(spec.id)  # a running container is stopped and removed
    await rt.delete(spec.id)
    with pytest.raises(ContainerNotFound):
        await rt.state(spec.id)
    assert spec.id not in {s.id for s in await rt.list()}, "a deleted container is still listed"


async def test_list_shows_every_container(flavor: Flavor) -> None:
    rt = flavor.runtime
    running, done = flavor.sleeper(_cid()), flavor.exiter(_cid(), 0)
    for spec in (running, done):
        await rt.create(spec)
        await rt.start(spec.id)
    await asyncio.wait_for(rt.wait(done.id), 20)
    states = {s.id: s for s in await rt.list()}
    assert states[running.id].status is Status.RUNNING
    assert states[done.id].status is Status.STOPPED and states[done.id].exit_code == 0
    for spec in (running, done):
        await rt.delete(spec.id)


async def test_start_error_surfaces(flavor: Flavor) -> None:
    rt = flavor.runtime
    spec = flavor.broken(_cid())
    with pytest.raises(RuntimeError_) as err:
        await rt.create(spec)
        await rt.start(spec.id)
    assert "/no/such/cmd" in str(err.value), "CreateContainerError should carry runc's message"
    await rt.delete(spec.id)


async def test_unknown_container_is_not_found(flavor: Flavor) -> None:
    rt = flavor.runtime
    for op in (rt.state, rt.start, rt.wait, rt.kill):
        with pytest.raises(ContainerNotFound):
            await op("no-such-container")
    await rt.delete("no-such-container")  # idempotent


async def test_new_runtime_object_readopts_containers(flavor: Flavor) -> None:
    rt = flavor.runtime
    running, done = flavor.sleeper(_cid()), flavor.exiter(_cid(), 7)
    for spec in (running, done):
        await rt.create(spec)
        await rt.start(spec.id)
    await asyncio.sleep(0.3)  # `done` exits while "no agent" looks
    again = flavor.reopen()
    states = {s.id: s for s in await again.list()}
    assert states[running.id].status is Status.RUNNING, "a restarted agent lost a container"
    final = await asyncio.wait_for(again.wait(done.id), 20)
    assert final.exit_code == 7, "a restarted agent should learn the real exit code"
    await again.kill(running.id, signal=9)
    assert (await asyncio.wait_for(again.wait(running.id), 20)).exit_code == 137
    for spec in (running, done):
        await again.delete(spec.id)


async def test_version_names_the_runtime(flavor: Flavor) -> None:
    assert (await flavor.runtime.version()).strip(), "NodeInfo would show an empty runtime"


async def test_output_lands_in_the_cri_log(flavor: Flavor, tmp_path: Path) -> None:
    rt = flavor.runtime
    log = tmp_path / "c.log"
    spec = flavor.talker(_cid(), str(log))
    await rt.create(spec)
    await rt.start(spec.id)
    await asyncio.wait_for(rt.wait(spec.id), 20)
    texts = [line.text for line in logs.tail(log)]
    assert texts == ["hello", "world"], "`pilothouse logs` would not show the container's output"
    await rt.delete(spec.id)

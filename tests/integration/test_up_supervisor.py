"""The local cluster's supervisor with plain `sleep` children: restart, backoff, stop, crash.

Every test ends every process it made: the supervisor's stop_all in a finally, then a sweep of
the pid files (as `down` does after a crash).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pilothouse.cli.cluster import processes
from pilothouse.cli.cluster.supervisor import ChildSpec, RestartPolicy, SpawnError, Supervisor

FAST = RestartPolicy(initial=0.05, maximum=0.2, reset_after=30.0)


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(tmp_path / "pids", policy=FAST)
    try:
        yield sup
    finally:
        await sup.stop_all()
        records = [processes.read(p) for p in (tmp_path / "pids").glob("*.pid")]
        processes.end([r for r in records if r is not None], timeout=2)


def sleeper(tmp_path: Path, name: str, seconds: float = 300) -> ChildSpec:
    return ChildSpec(
        name=name, argv=("sleep", str(seconds)), log_path=tmp_path / "logs" / f"{name}.log"
    )


async def wait_for(predicate: Callable[[], object], within: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_a_killed_child_is_started_again_with_a_new_pid(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    first = await supervisor.start(sleeper(tmp_path, "one"))
    assert processes.read(supervisor.pid_file("one")) == processes.record_of(first)

    os.kill(first, signal.SIGKILL)
    restarted = await wait_for(lambda: supervisor.pid("one") not in (None, first))

    second = supervisor.pid("one")
    assert restarted and second is not None, "a child killed with SIGKILL was not started again"
    assert processes.record_of(second).alive()
    assert processes.read(supervisor.pid_file("one")) == processes.record_of(second), (
        "the pid file still names the dead run, so `down` after a crash would miss the new one"
    )
    assert supervisor.restarts("one") == 1


async def test_a_child_that_keeps_exiting_is_restarted_with_growing_delays(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    await supervisor.start(sleeper(tmp_path, "quick", seconds=0))
    assert await wait_for(lambda: supervisor.restarts("quick") >= 4), (
        "a child that exits at once was not restarted again and again"
    )
    assert FAST.delay(1) < FAST.delay(2) < FAST.delay(3) <= FAST.maximum
    assert FAST.delay(50) == FAST.maximum


async def start_with_grandchild(
    supervisor: Supervisor, tmp_path: Path, name: str
) -> tuple[int, processes.ProcessRecord]:
    """Start child `name`, a shell that leaves a `sleep 300` behind: (its pid, that grandchild)."""
    grandchild_file = tmp_path / f"{name}.grandchild.pid"
    spec = ChildSpec(
        name=name,
        argv=("sh", "-c", f"sleep 300 & echo $! > {grandchild_file}; wait"),
        log_path=tmp_path / "logs" / f"{name}.log",
    )
    leader = await supervisor.start(spec)
    assert await wait_for(lambda: grandchild_file.exists() and grandchild_file.read_text())
    return leader, processes.record_of(int(grandchild_file.read_text()))


async def test_stop_ends_the_whole_process_group_and_removes_the_pid_file(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    # A shell that leaves a grandchild behind: stop must end it too.
    leader, grandchild = await start_with_grandchild(supervisor, tmp_path, "tree")
    assert grandchild.alive()

    await supervisor.stop("tree")

    assert not processes.record_of(leader).alive(), "the child still runs after stop"
    assert not grandchild.alive(), "a grandchild of the child still runs after stop"
    assert not supervisor.pid_file("tree").exists()
    assert supervisor.pid("tree") is None


async def test_a_child_that_ignores_sigterm_is_killed_after_its_stop_timeout(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    spec = ChildSpec(
        name="stubborn",
        argv=(
            sys.executable,
            "-c",
            "import signal,time; signal.signal(15, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(300)",
        ),
        log_path=tmp_path / "logs" / "stubborn.log",
        stop_timeout=0.5,
    )
    pid = await supervisor.start(spec)
    assert await wait_for(lambda: "ready" in spec.log_path.read_text())
    code = await supervisor.stop("stubborn")
    assert code == -signal.SIGKILL
    assert not processes.record_of(pid).alive()


async def test_the_leftovers_of_a_crashed_run_are_killed_before_the_next_run(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    leader, helper = await start_with_grandchild(supervisor, tmp_path, "parent")

    os.kill(leader, signal.SIGKILL)

    assert await wait_for(lambda: not helper.alive()), (
        "a helper of a crashed child outlived it, and would hold what the next run needs"
    )
    assert await wait_for(lambda: supervisor.pid("parent") not in (None, leader))


async def test_after_a_supervisor_crash_the_pid_files_end_the_children(tmp_path: Path) -> None:
    # The supervisor runs in its own process; kill -9 it, then end its children by pid file.
    state = tmp_path / "pids"
    script = (
        "import asyncio, pathlib, sys\n"
        "from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor\n"
        "async def main():\n"
        f"    sup = Supervisor(pathlib.Path({str(state)!r}))\n"
        "    for n in ('a', 'b'):\n"
        f"        await sup.start(ChildSpec(name=n, argv=('sleep', '300'), "
        f"log_path=pathlib.Path({str(tmp_path)!r}) / (n + '.log')))\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(300)\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        line = b""
        while line.strip() != b"ready":  # structlog's default output comes first
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the supervisor process ended before its children started"
        proc.kill()
        await proc.wait()
        records = [r for r in (processes.read(p) for p in state.glob("*.pid")) if r]
        assert len(records) == 2 and all(r.alive() for r in records), (
            "the children of a crashed supervisor cannot be found by their pid files"
        )
        processes.end(records, timeout=5)
        assert not any(r.alive() for r in records)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        processes.kill(r for r in (processes.read(p) for p in state.glob("*.pid")) if r)


async def test_a_missing_binary_fails_the_first_start_clearly(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    spec = ChildSpec(name="ghost", argv=("/nonexistent/binary",), log_path=tmp_path / "ghost.log")
    with pytest.raises(SpawnError, match="cannot start ghost"):
        await supervisor.start(spec)
    assert "ghost" not in supervisor.names()

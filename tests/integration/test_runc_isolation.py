"""Real runc containers (as root): isolation, limits, OOM, fork bombs, re-adoption, logs.

Each test runs busybox from the host in a throwaway rootfs under a RuncRuntime whose state
dir and cgroup parent are private to the test; the `runc_runtime` fixture deletes every
container and fails if any cgroup is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from nodeagent.runtime import Mount, Resources, Status, mounts
from nodeagent.runtime import logs as cri_logs
from nodeagent.runtime.cgroups import Cgroups
from nodeagent.runtime.ocispec import cgroups_path
from nodeagent.runtime.runc import RuncRuntime
from tests.fixtures.runtime import SLEEPER, busybox_spec, wait_ready

pytestmark = [pytest.mark.root]

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _read(path: Path) -> str:
    return path.read_text()


def _cid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _pids_limit_hit(pids_dir: Path, within: float = 30.0) -> None:
    """Wait until the pids controller has refused a fork (`pids.events`: max above 0), for at
    most `within` s; the assertions after the wait say what was seen if it never happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        events = (pids_dir / "pids.events").read_text().split()
        if events and events[-1] != "0":
            return
        await asyncio.sleep(0.1)


async def _run_to_end(rt: RuncRuntime, spec) -> object:  # type: ignore[no-untyped-def]
    await rt.create(spec)
    await rt.start(spec.id)
    return await asyncio.wait_for(rt.wait(spec.id), 60)


async def test_container_sees_its_own_namespaces_and_hostname(
    runc_runtime: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    script = (
        "echo pid=$$; echo host=$(hostname); "
        "for n in pid mnt uts ipc net; do echo ns-$n=$(readlink /proc/self/ns/$n); done"
    )
    log = tmp_path / "iso.log"
    spec = busybox_spec(
        busybox_rootfs, _cid("iso"), "/bin/sh", "-c", script, hostname="web-7d9f", log_path=str(log)
    )
    final = await _run_to_end(runc_runtime, spec)
    assert final.exit_code == 0, f"the container failed: {cri_logs.tail(log)}"
    seen = dict(line.text.split("=", 1) for line in cri_logs.tail(log))
    assert seen["pid"] == "1", "the container's process should see itself as PID 1"
    assert seen["host"] == "web-7d9f", "the container should have the pod's hostname"
    for ns in ("pid", "mnt", "uts", "ipc", "net"):
        host_ns = os.readlink(f"/proc/self/ns/{ns}")
        assert seen[f"ns-{ns}"] != host_ns, f"the container shares the host's {ns} namespace"


async def test_cgroup_carries_memory_cpu_and_pids_limits(
    runc_runtime: RuncRuntime, busybox_rootfs: Path
) -> None:
    resources = Resources(
        memory_limit_bytes=64 * MiB, cpu_limit_millis=500, cpu_request_millis=250, pids_limit=77
    )
    spec = busybox_spec(busybox_rootfs, _cid("lim"), "/bin/sh", "-c", SLEEPER, resources=resources)
    await runc_runtime.create(spec)
    await runc_runtime.start(spec.id)
    cg = Cgroups()
    path = cgroups_path(spec.id, runc_runtime.settings)

    def read(controller: str, name: str) -> str:
        return (cg.dir(controller, path) / name).read_text().strip()

    if cg.v2:
        assert read("memory", "memory.max") == str(64 * MiB)
        assert read("cpu", "cpu.max") == "50000 100000"
        assert read("pids", "pids.max") == "77"
    else:
        assert read("memory", "memory.limit_in_bytes") == str(64 * MiB), "memory limit missing"
        if runc_runtime.settings.swap_limit:
            assert read("memory", "memory.memsw.limit_in_bytes") == str(64 * MiB), "swap uncapped"
        assert read("cpu", "cpu.cfs_quota_us") == "50000", "cpu limit missing (CFS quota)"
        assert read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("cpu", "cpu.shares") == "256", "cpu request missing (shares)"
        assert read("pids", "pids.max") == "77", "pids limit missing"
    pid = (await runc_runtime.state(spec.id)).pid
    own = _read(Path(f"/proc/{pid}/cgroup"))
    assert path in own, f"the container's process is not in its cgroup: {own}"
    await runc_runtime.delete(spec.id)
    assert not cg.dirs(path), "delete left the container's cgroups behind"


async def test_allocating_past_the_memory_limit_is_oom_killed(
    runc_runtime: RuncRuntime, busybox_rootfs: Path
) -> None:
    # `tail` keeps a newline-free stream in memory until the limit stops it.
    resources = Resources(memory_limit_bytes=24 * MiB, cpu_limit_millis=500)
    spec = busybox_spec(
        busybox_rootfs,
        _cid("oom"),
        "/bin/sh",
        "-c",
        "head -c 200m /dev/zero | tail; exit 3",
        resources=resources,
    )
    final = await _run_to_end(runc_runtime, spec)
    assert final.oom_killed, "a container that hit its memory limit should be reported OOMKilled"
    again = await RuncRuntime(
        runc_runtime.state_dir, cgroup_parent=runc_runtime.settings.cgroup_parent
    ).state(spec.id)
    assert again.oom_killed, "a restarted agent should still see the container was OOMKilled"


async def test_fork_bomb_stops_at_the_pids_limit(
    runc_runtime: RuncRuntime, busybox_rootfs: Path
) -> None:
    resources = Resources(pids_limit=32, cpu_limit_millis=200, memory_limit_bytes=64 * MiB)
    spec = busybox_spec(
        busybox_rootfs,
        _cid("bomb"),
        "/bin/sh",
        "-c",
        "bomb() { bomb | bomb & }; bomb; sleep 1000",
        resources=resources,
    )
    await runc_runtime.create(spec)
    await runc_runtime.start(spec.id)
    try:
        cg = Cgroups()
        pids_dir = cg.dir("pids", cgroups_path(spec.id, runc_runtime.settings))
        await _pids_limit_hit(pids_dir)
        current = int((pids_dir / "pids.current").read_text())
        assert current <= 32, f"the fork bomb grew to {current} processes past its limit of 32"
        events = (pids_dir / "pids.events").read_text()
        assert "max" in events and events.split()[-1] != "0", "the pids limit was never reached"
        # The host still answers: a new process starts and finishes.
        probe = await asyncio.create_subprocess_exec("/bin/true")
        rc = await asyncio.wait_for(probe.wait(), 10)
        assert rc == 0, "the host could not start a process during the fork bomb"
    finally:
        await runc_runtime.kill(spec.id, signal=9)
        final = await asyncio.wait_for(runc_runtime.wait(spec.id), 30)
        await runc_runtime.delete(spec.id)
    assert final.status is Status.STOPPED


async def test_restarted_agent_readopts_running_and_learns_exit_codes(
    runc_runtime: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    rt = runc_runtime
    log = tmp_path / "quick.log"
    quick = busybox_spec(
        busybox_rootfs,
        _cid("quick"),
        "/bin/sh",
        "-c",
        "echo before; sleep 0.5; echo after; exit 9",
        log_path=str(log),
    )
    steady = busybox_spec(busybox_rootfs, _cid("steady"), "/bin/sh", "-c", SLEEPER)
    for spec in (quick, steady):
        await rt.create(spec)
        await rt.start(spec.id)
    steady_pid = (await rt.state(steady.id)).pid
    del rt  # the agent "goes down": nobody watches the containers now
    exit_file = runc_runtime.state_dir / "exits" / quick.id
    for _ in range(100):
        if exit_file.exists():
            break
        await asyncio.sleep(0.1)

    again = RuncRuntime(runc_runtime.state_dir, cgroup_parent=runc_runtime.settings.cgroup_parent)
    states = {s.id: s for s in await again.list()}
    assert states[steady.id].status is Status.RUNNING, "a running container was lost"
    assert states[steady.id].pid == steady_pid, "the container was restarted, not re-adopted"
    assert states[quick.id].status is Status.STOPPED
    assert states[quick.id].exit_code == 9, "the real exit code of a container is lost"
    assert [line.text for line in cri_logs.tail(log)] == ["before", "after"]
    await wait_ready(again, steady.id)
    await again.kill(steady.id)
    assert (await asyncio.wait_for(again.wait(steady.id), 30)).exit_code == 143


async def test_logs_are_written_in_cri_format(
    runc_runtime: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "pods" / "web" / "0.log"
    spec = busybox_spec(
        busybox_rootfs,
        _cid("log"),
        "/bin/sh",
        "-c",
        "echo to-out; echo to-err >&2; printf 'no-newline'",
        log_path=str(log),
    )
    await _run_to_end(runc_runtime, spec)
    raw = log.read_text().splitlines()
    record = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] "
    )
    assert raw and all(record.match(r) for r in raw), f"not CRI log records: {raw}"
    lines = [(line.stream.value, line.text) for line in cri_logs.tail(log)]
    assert ("stdout", "to-out") in lines and ("stderr", "to-err") in lines, lines
    assert cri_logs.tail(log, 1)[-1].text == "no-newline", "the last, unterminated line is lost"


async def test_overlay_rootfs_is_mounted_for_the_container_and_unmounted_on_delete(
    runc_runtime: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    overlay = Mount(
        type="overlay",
        source="overlay",
        target="/",
        options=(f"lowerdir={busybox_rootfs},upperdir={upper},workdir={work}",),
    )
    spec = busybox_spec(busybox_rootfs, _cid("ovl"), "/bin/sh", "-c", "echo hi > /tmp/written")
    spec = dataclasses.replace(spec, rootfs="", rootfs_mounts=(overlay,))
    final = await _run_to_end(runc_runtime, spec)
    assert final.exit_code == 0
    assert (upper / "tmp" / "written").read_text() == "hi\n", "writes should land in the upper dir"
    assert not (busybox_rootfs / "tmp" / "written").exists(), "the image layer was written to"
    target = runc_runtime.bundle_dir(spec.id) / "rootfs"
    assert mounts.is_mounted(target)
    await runc_runtime.delete(spec.id)
    assert not mounts.is_mounted(target), "delete left the container's rootfs mounted"


async def test_agent_rotated_log_keeps_the_previous_file(
    runc_runtime: RuncRuntime, busybox_rootfs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "rot.log"
    spec = busybox_spec(
        busybox_rootfs,
        _cid("rot"),
        "/bin/sh",
        "-c",
        "echo first; sleep 0.5; echo second; sleep 1000",
        log_path=str(log),
    )
    await runc_runtime.create(spec)
    await runc_runtime.start(spec.id)
    for _ in range(600):  # up to 30 s on a loaded machine
        if "first" in log.read_text():
            break
        await asyncio.sleep(0.05)
    assert "first" in log.read_text(), "the container's first line never reached its log"
    await runc_runtime.rotate_log(spec.id)
    for _ in range(300):
        if log.exists() and "second" in log.read_text():
            break
        await asyncio.sleep(0.1)
    assert "first" in cri_logs.rotated_path(log).read_text(), "the rotated file lost its lines"
    assert "second" in log.read_text(), "the monitor did not reopen the log after rotation"
    assert [line.text for line in cri_logs.tail(log)] == ["first", "second"]
    await runc_runtime.delete(spec.id)


AGENT = """
import asyncio, sys
from pathlib import Path
from nodeagent.runtime import ContainerSpec
from nodeagent.runtime.runc import RuncRuntime

async def main():
    rt = RuncRuntime(Path(sys.argv[1]), cgroup_parent=sys.argv[2])
    for cid, script in (("survivor", sys.argv[4]), ("leaver", "sleep 1; exit 42")):
        args = ("/bin/sh", "-c", script)
        spec = ContainerSpec(id=cid, hostname=cid, rootfs=sys.argv[3], args=args)
        await rt.create(spec)
        await rt.start(cid)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_containers_outlive_a_killed_agent(
    runc_runtime: RuncRuntime, busybox_rootfs: Path
) -> None:
    """`kill -9` of the agent process: its containers keep running, exit codes are kept."""
    rt = runc_runtime
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT,
        str(rt.state_dir),
        rt.settings.cgroup_parent,
        str(busybox_rootfs),
        SLEEPER,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        assert agent.stdout is not None
        ready = b""
        while ready.strip() != b"ready":  # past the agent's own log lines
            ready = await asyncio.wait_for(agent.stdout.readline(), 60)
            assert ready, "the agent process could not start its containers"
        survivor_pid = (await rt.state("survivor")).pid
    finally:
        agent.kill()
        await agent.wait()
    leaver = await asyncio.wait_for(rt.wait("leaver"), 30)
    assert leaver.exit_code == 42, "the exit code of a container that ended after the agent died"
    survivor = await rt.state("survivor")
    assert survivor.status is Status.RUNNING, "killing the agent killed its container"
    assert survivor.pid == survivor_pid

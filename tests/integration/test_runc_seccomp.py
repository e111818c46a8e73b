"""Seccomp on real runc containers (issue 11): Docker's default profile unless Unconfined.

What a user sees from inside a container: /proc/self/status says `Seccomp: 2` (filtered), and
`keyctl` and `unshare(CLONE_NEWUSER)` fail with EPERM (so `unshare -Urmn` no longer hands out a
full capability set in a new namespace); a container run Unconfined (where the cluster allows
it) has no filter and both calls succeed. The calls are made by a tiny static C program
(tests/data/helpers/syscalls.c; busybox has no keyctl), built with the node's gcc.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from nodeagent.runtime import Seccomp
from nodeagent.runtime import logs as cri_logs
from nodeagent.runtime.runc import RuncRuntime
from tests.fixtures.runtime import busybox_spec, make_busybox_rootfs

pytestmark = [pytest.mark.root]

HELPER = Path(__file__).resolve().parents[1] / "data" / "helpers" / "syscalls.c"


@pytest.fixture(scope="module")
def syscalls_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs with /bin/syscalls (the static helper) in it."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc libc6-dev)")
    root = make_busybox_rootfs(tmp_path_factory.mktemp("seccomp") / "rootfs")
    built = subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(root / "bin" / "syscalls"), str(HELPER)],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a static helper here: {built.stderr.strip()[-300:]}")
    return root


async def _run(rt: RuncRuntime, rootfs: Path, tmp: Path, seccomp: Seccomp) -> dict[str, str]:
    log = tmp / f"{seccomp.value}.log"
    script = (
        "grep '^Seccomp:' /proc/self/status | tr -d ' \\t'; /bin/syscalls; "
        "unshare -U true; echo busybox-unshare=$?"
    )
    spec = busybox_spec(
        rootfs, f"sc-{uuid.uuid4().hex[:8]}", "/bin/sh", "-c", script, log_path=str(log)
    )
    spec = dataclasses.replace(spec, seccomp=seccomp)
    await rt.create(spec)
    await rt.start(spec.id)
    final = await asyncio.wait_for(rt.wait(spec.id), 60)
    lines = [line.text for line in cri_logs.tail(log)]
    assert final.exit_code == 0, f"the container failed: {lines}"
    # "Seccomp:2" from /proc, "name=result" from the helper and the shell
    pairs = (line.replace(":", "=", 1) if line.startswith("Seccomp:") else line for line in lines)
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


async def test_the_default_profile_refuses_keyctl_and_new_user_namespaces(
    runc_runtime: RuncRuntime, syscalls_rootfs: Path, tmp_path: Path
) -> None:
    seen = await _run(runc_runtime, syscalls_rootfs, tmp_path, Seccomp.RUNTIME_DEFAULT)
    assert seen.get("Seccomp") == "2", f"the container is not under a seccomp filter: {seen}"
    assert seen.get("keyctl") == "EPERM", f"keyctl was not refused: {seen}"
    assert seen.get("unshare-user") == "EPERM", f"unshare(CLONE_NEWUSER) was not refused: {seen}"
    assert seen.get("busybox-unshare") != "0", f"`unshare -U` worked in the container: {seen}"


async def test_unconfined_runs_without_a_filter(
    runc_runtime: RuncRuntime, syscalls_rootfs: Path, tmp_path: Path
) -> None:
    seen = await _run(runc_runtime, syscalls_rootfs, tmp_path, Seccomp.UNCONFINED)
    assert seen.get("Seccomp") == "0", f"an Unconfined container has a filter: {seen}"
    assert seen.get("keyctl") == "ok", seen
    assert seen.get("unshare-user") == "ok", seen

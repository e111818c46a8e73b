"""A container's records on disk are damaged; the runc runtime goes on (issue 12, as root).

What a user relies on: one unreadable `meta.json` or `final.json` never makes `list()` fail
(it crash-looped the agent's start-up), the running container keeps running with its labels
(so its pod re-adopts it), the bad file is kept aside for a person to look at, and a container
whose every record is lost is still listed and can be stopped and deleted without leftovers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.runtime import Status
from nodeagent.state.quarantine import quarantined
from tests.fixtures.runtime import SLEEPER, busybox_spec, wait_ready

pytestmark = [pytest.mark.root]


async def _running(rt, rootfs: Path, cid: str):  # type: ignore[no-untyped-def]
    await rt.create(busybox_spec(rootfs, cid, "/bin/sh", "-c", SLEEPER, labels={"pod": "p1"}))
    await rt.start(cid)
    await wait_ready(rt, cid)
    return await rt.state(cid)


def _reopen(rt):  # type: ignore[no-untyped-def]
    from nodeagent.runtime.runc import RuncRuntime

    return RuncRuntime(rt.state_dir, cgroup_parent=rt.settings.cgroup_parent)


@pytest.mark.parametrize("damage", ["torn", "empty", "not-an-object"])
async def test_unreadable_meta_is_rebuilt_and_the_container_keeps_running(
    runc_runtime, busybox_rootfs: Path, damage: str
) -> None:
    rt = runc_runtime
    before = await _running(rt, busybox_rootfs, "ct-meta")
    meta = rt.bundle_dir("ct-meta") / "meta.json"
    whole = json.loads(meta.read_text())
    meta.write_text({"torn": meta.read_text()[:20], "empty": "", "not-an-object": "[1]"}[damage])

    again = _reopen(rt)
    listed = {s.id: s for s in await again.list()}  # the agent's start-up: must not raise
    state = listed["ct-meta"]
    assert (state.status, state.pid) == (Status.RUNNING, before.pid), (
        "the container with a damaged record was not seen running as it was"
    )
    assert state.labels == before.labels, "the rebuilt record lost the container's labels"
    assert json.loads(meta.read_text()) == whole, "meta.json was not rebuilt as it was"
    assert quarantined(meta), "the damaged meta.json was not kept aside"
    await again.kill("ct-meta", signal=9)
    assert (await again.wait("ct-meta")).status is Status.STOPPED


async def test_meta_rebuilt_from_runc_state_when_config_is_damaged_too(
    runc_runtime, busybox_rootfs: Path
) -> None:
    rt = runc_runtime
    before = await _running(rt, busybox_rootfs, "ct-both")
    bundle = rt.bundle_dir("ct-both")
    (bundle / "meta.json").write_text("{")
    (bundle / "config.json").write_text("")
    state = await _reopen(rt).state("ct-both")
    assert (state.status, state.pid, state.labels) == (Status.RUNNING, before.pid, before.labels)


async def test_container_whose_records_are_all_lost_is_listed_unlabelled_and_removable(
    runc_runtime, busybox_rootfs: Path
) -> None:
    rt = runc_runtime
    before = await _running(rt, busybox_rootfs, "ct-lost")
    bundle = rt.bundle_dir("ct-lost")
    (bundle / "meta.json").write_text("{")
    (bundle / "config.json").write_text("")
    (rt.state_dir / "runc" / "ct-lost" / "state.json").write_text("")
    again = _reopen(rt)
    state = await again.state("ct-lost")
    assert (state.status, state.pid) == (Status.RUNNING, before.pid)
    assert state.labels == {}, "labels were guessed for a container whose records are lost"
    assert again.monitor_pid("ct-lost") is not None, "its monitor was not recognised"
    await again.kill("ct-lost", signal=9)
    await again.wait("ct-lost")
    await again.delete("ct-lost")
    assert not bundle.exists()


async def test_unreadable_final_state_is_read_again_from_the_exit(
    runc_runtime, busybox_rootfs: Path
) -> None:
    rt = runc_runtime
    await rt.create(busybox_spec(busybox_rootfs, "ct-final", "/bin/sh", "-c", "exit 7"))
    await rt.start("ct-final")
    assert (await rt.wait("ct-final")).exit_code == 7
    final = rt.bundle_dir("ct-final") / "final.json"
    assert final.exists()
    final.write_text('{"id": ')
    state = await _reopen(rt).state("ct-final")
    assert (state.status, state.exit_code) == (Status.STOPPED, 7)
    assert quarantined(final)

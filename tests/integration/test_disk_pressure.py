"""A pod filling the node's disk (issue 11): the pod is evicted, the node reports DiskPressure,
and etcd and the control plane keep serving.

The layout is `pilothouse up`'s, on a small disk so the real one is never filled: the control
plane's data dir and the agent's state dir share one small loop-mounted file system (the
"node's disk"), and etcd's data dir sits on a file system of its own inside it
(`pilothouse.cli.cluster.volumes`, what `up` does). A bare pod then writes until that disk is
full. Before the fix etcd exited with "no space left on device" and the control plane
crash-looped; now, within a few eviction passes, the pod is Failed with reason Evicted ("The
node was low on resource: ephemeral-storage. …"), its space is given back, the node shows
DiskPressure, and objects can still be written and read.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster import volumes
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.agent_process import missing_for_runc
from tests.fixtures.agents import Cluster, wait_all_ready
from tests.unit.waiting import eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]

MiB = 1024 * 1024


@pytest.fixture
async def small_disk_cluster() -> AsyncIterator[tuple[Cluster, Path]]:
    """A cluster on a 96 MiB disk, etcd on a 256 MiB file system of its own; all undone after."""
    if reason := missing_for_runc():
        pytest.skip(reason)
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    root = Path(tempfile.mkdtemp(prefix="ph-df-"))
    disk = root / "d"
    etcd = disk / "controlplane" / "etcd"
    cluster: Cluster | None = None
    try:
        await asyncio.to_thread(
            volumes.ensure, image=root / "disk.img", mount_point=disk, size_bytes=96 * MiB
        )
        await asyncio.to_thread(
            volumes.ensure, image=root / "etcd.img", mount_point=etcd, size_bytes=256 * MiB
        )
        cluster = Cluster(disk)
        await cluster.start_control_plane()
        await cluster.add_agent(
            "n1",
            flags=("--eviction-interval", "0.5", "--eviction-pressure-transition-period", "60"),
        )
        yield cluster, etcd
    finally:
        if cluster is not None:
            await cluster.stop()
        for point in (etcd, disk):
            with contextlib.suppress(volumes.VolumeError):
                await asyncio.to_thread(volumes.release, point)
        shutil.rmtree(root, ignore_errors=True)


async def test_a_pod_filling_the_disk_is_evicted_and_etcd_and_the_api_keep_serving(
    small_disk_cluster: tuple[Cluster, Path],
) -> None:
    cluster, etcd_dir = small_disk_cluster
    filler = factories.pod(
        name="filler",
        containers=[
            factories.container(
                name="app",
                script="dd if=/dev/zero of=/fill bs=1M count=1000; exec sleep 3600",
            )
        ],
    )
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(filler)

        async def evicted() -> object:
            pod = await client.get(Kind.POD, "filler", namespace="default")
            assert isinstance(pod, o.Pod)
            return pod.status.reason == "Evicted" or (pod.status.phase, pod.status.reason)

        await eventually(evicted, "the pod filling the disk was never evicted", within=90)
        pod = await client.get(Kind.POD, "filler", namespace="default")
        assert isinstance(pod, o.Pod)
        assert pod.status.phase == "Failed"
        assert pod.status.message.startswith(
            "The node was low on resource: ephemeral-storage. Threshold quantity: "
        ), pod.status.message
        assert "Container app was using" in pod.status.message, pod.status.message

        async def pressure() -> object:
            node = await client.get(Kind.NODE, "n1")
            assert isinstance(node, o.Node)
            found = {c.type: c.status for c in node.status.conditions}
            return found.get("DiskPressure") == "True" or found

        await eventually(pressure, "the node never showed DiskPressure", within=30)

        # etcd and the API still write and read.
        after = factories.deployment(name="after", replicas=0, typed=True)
        await client.apply(after)
        got = await client.get(Kind.DEPLOYMENT, "after", namespace="default")
        assert got.metadata.name == "after"  # type: ignore[attr-defined]
    # etcd preallocates its WAL (64 MiB segments); its file system must still have room.
    assert shutil.disk_usage(etcd_dir).free > 32 * MiB, "etcd's own file system filled up"

"""`pilothouse up --nodes N` as a user runs it, for the cluster benchmarks (startup, heal).

What `up` gives users, and so what these numbers describe: a control plane with its embedded
etcd, N agents each in a network namespace of its own on a bridge (a machine each), mutual
TLS between every part (agents joined with a bootstrap token), CNI pod networks (bridge,
host-local addresses from each node's pod CIDR), images pulled from the local registry.
`CONFIGURATION` says so in each benchmark's JSON.

`UpCluster` offers what the benchmarks need of a cluster (the same names as
tests.fixtures.agents.Cluster where they overlap: `agents`, `client()`, `containers(node)`),
and what only a machine of its own allows: cutting and restoring a node's link.

Invariant: `up_cluster` always ends with `down` and the forced clean-up tests use (processes,
namespaces, mounts, cgroups, the data dir), also when the benchmark fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse import credentials
from pilothouse.cli.cluster import netns as netns_hosts
from pilothouse.client import Client
from tests.fixtures.agent_process import Container
from tests.fixtures.cluster import LocalClusterRun, missing_for_local_cluster

CONFIGURATION = {
    "cluster": "pilothouse up --nodes N (what users run)",
    "mutual_tls": True,
    "pod_network": "cni (bridge, host-local, portmap)",
    "nodes_in": "a network namespace each, on a bridge",
    "etcd": "embedded, one member",
    "images": "pulled from up's local registry",
    "omitted": [],
}


class UpCluster:
    def __init__(self, run: LocalClusterRun, nodes: int) -> None:
        self.run = run
        self.agents = [f"node-{i}" for i in range(1, nodes + 1)]

    def client(self) -> Client:
        info = self.run.cluster_info()
        admin = self.run.admin()
        if admin is None:
            return Client(info.controlplane)
        return Client(
            info.controlplane,
            credentials=admin.channel_credentials(),
            options=credentials.channel_options(),
        )

    async def containers(self, node: str) -> list[Container]:
        """What runc lists on `node` (from its runc root, as tests.fixtures.agents does)."""
        root = self.run.layout.node(node) / "runtime" / "runc"
        got = await asyncio.to_thread(
            subprocess.run,
            ["runc", "--root", str(root), "list", "-f", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if got.returncode != 0:
            return []
        listed = json.loads(got.stdout or "null") or []
        return [Container(id=c["id"], status=c["status"], pid=c["pid"]) for c in listed]

    def set_link(self, node: str, *, up: bool) -> None:
        """Cut or restore a node's cable (its veth on the cluster's bridge)."""
        link = netns_hosts.HostNetwork.link(self.run.layout.cluster_id, node)
        subprocess.run(["ip", "link", "set", link, "up" if up else "down"], check=True, timeout=30)


@contextlib.asynccontextmanager
async def up_cluster(*, nodes: int = 3) -> AsyncIterator[UpCluster]:
    if reason := missing_for_local_cluster():
        raise SystemExit(f"cannot run `pilothouse up` here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="ph-bu-"))
    run = LocalClusterRun(root)
    try:
        started = await asyncio.to_thread(run.up, nodes=nodes)
        if started.returncode != 0:
            raise SystemExit(f"`pilothouse up --nodes {nodes}` failed:\n{started.stderr}")
        yield UpCluster(run, nodes)
    finally:
        try:
            await asyncio.to_thread(run.down)
        finally:
            await asyncio.to_thread(run.force_clean)
            shutil.rmtree(root, ignore_errors=True)

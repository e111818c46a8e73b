"""What the control-plane fault tests run on `pilothouse up --control-planes 3 --nodes 3`:
a handle on the cluster's processes and links (`HaCluster`), the faults (`Faults`), and the
invariants checked all along (`Monitor`).

Faults, each injected and healed by `Faults.run(kind)` (the supervisor of `up` restarts
what is killed, as systemd would):
- kill_leader: SIGKILL the leading control-plane process;
- kill_etcd: SIGKILL one etcd member (its control plane restarts it);
- freeze_leader: SIGSTOP the leader past its lease (3-5 s), then SIGCONT;
- freeze_agent: SIGSTOP an agent for 3-6 s, then SIGCONT;
- cut_link: a node's link down for 3-6 s, then up;
- restart_agent: SIGKILL an agent.
Node faults (the last three) mark the nodes disturbed from injection until every node is
Ready again and a settle time has passed; pod-count limits are checked only outside those.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse import credentials
from pilothouse.cli.cluster import iproute, netns
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.cluster import LocalClusterRun

NODES = ["node-1", "node-2", "node-3"]
KINDS = ("kill_leader", "kill_etcd", "freeze_leader", "freeze_agent", "cut_link", "restart_agent")
NODE_FAULTS = frozenset({"freeze_agent", "cut_link", "restart_agent"})
SETTLE_S = 4.0


class HaCluster:
    """The processes, addresses and credentials of an `up --control-planes 3` cluster."""

    def __init__(self, run: LocalClusterRun) -> None:
        self.run = run
        self.info = run.cluster_info()
        settings = self.info.client_settings
        self.tls = credentials.load_files(
            ca_cert=Path(settings["ca-cert"]),
            client_cert=Path(settings["client-cert"]),
            client_key=Path(settings["client-key"]),
        )
        self.members = dict(self.info.controlplanes)
        self.frozen: set[int] = set()

    def client(self, timeout: float = 6.0) -> Client:
        return Client(
            self.info.controlplane,
            timeout=timeout,
            credentials=self.tls.channel_credentials(),
            options=credentials.channel_options(),
        )

    def pid(self, child: str) -> int | None:
        record = self.run.child(child)
        return record.pid if record is not None and record.alive() else None

    def etcd_pid(self, member: str) -> int | None:
        parent = self.pid(member)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == parent and (entry / "comm").read_text().strip() == "etcd":
                    return int(entry.name)
        return None

    async def leader(self) -> str | None:
        try:
            async with self.client(timeout=2.0) as client:
                answer = await client.controlplanes()
        except Exception:
            return None
        return next((m.name for m in answer.members if m.leader and m.alive), None)

    async def steady_leader(self) -> str | None:
        """The leader, once etcd's raft leader is on another member (as the leader keeps it:
        controlplane.leader.placement), else None."""
        try:
            async with self.client(timeout=2.0) as client:
                answer = await client.controlplanes()
        except Exception:
            return None
        lead = next((m for m in answer.members if m.leader and m.alive), None)
        return lead.name if lead is not None and not lead.etcd.leader else None

    def signal(self, pid: int | None, sig: signal.Signals) -> None:
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if sig is signal.SIGSTOP:
            self.frozen.add(pid)
        elif sig is signal.SIGCONT:
            self.frozen.discard(pid)

    def link(self, node: str, *, up: bool) -> None:
        name = netns.HostNetwork.link(self.run.layout.cluster_id, node)
        iproute.ip("link", "set", name, "up" if up else "down")

    def heal_all(self) -> None:
        for pid in list(self.frozen):
            self.signal(pid, signal.SIGCONT)
        for node in NODES:
            with contextlib.suppress(Exception):
                self.link(node, up=True)

    def containers(self, node: str) -> list[str]:
        """The ids of the containers runc runs on `node`: `<ns>_<pod>_<container>_<attempt>`."""
        root = self.run.layout.node(node) / "runtime" / "runc"
        got = subprocess.run(
            ["runc", "--root", str(root), "list", "-f", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if got.returncode != 0:
            return []
        listed = json.loads(got.stdout or "null") or []
        return [c["id"] for c in listed if c["status"] == "running"]


@dataclass
class Faults:
    """A seeded schedule of faults (see the module docstring)."""

    cluster: HaCluster
    rng: random.Random
    injected: list[str] = field(default_factory=list)
    disturbed_until: float = 0.0  # nodes may be lost until then (monotonic)
    disturbing: bool = False

    def nodes_disturbed(self) -> bool:
        return self.disturbing or time.monotonic() < self.disturbed_until

    async def schedule(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            kind = self.rng.choice(KINDS)
            await self.run(kind)
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))

    async def run(self, kind: str) -> None:
        cluster, rng = self.cluster, self.rng
        started = time.monotonic()
        if kind in NODE_FAULTS:
            self.disturbing = True
        try:
            if kind == "kill_leader":
                leader = await cluster.leader()
                target = leader or rng.choice(sorted(cluster.members))
                cluster.signal(cluster.pid(target), signal.SIGKILL)
            elif kind == "kill_etcd":
                target = rng.choice(sorted(cluster.members))
                cluster.signal(cluster.etcd_pid(target), signal.SIGKILL)
            elif kind == "freeze_leader":
                target = await cluster.leader() or rng.choice(sorted(cluster.members))
                pid = cluster.pid(target)
                cluster.signal(pid, signal.SIGSTOP)
                await asyncio.sleep(rng.uniform(3.0, 5.0))
                cluster.signal(pid, signal.SIGCONT)
            elif kind == "freeze_agent":
                target = rng.choice(NODES)
                pid = cluster.pid(target)
                cluster.signal(pid, signal.SIGSTOP)
                await asyncio.sleep(rng.uniform(3.0, 6.0))
                cluster.signal(pid, signal.SIGCONT)
            elif kind == "cut_link":
                target = rng.choice(NODES)
                cluster.link(target, up=False)
                await asyncio.sleep(rng.uniform(3.0, 6.0))
                cluster.link(target, up=True)
            else:  # restart_agent
                target = rng.choice(NODES)
                cluster.signal(cluster.pid(target), signal.SIGKILL)
        finally:
            if kind in NODE_FAULTS:
                self.disturbing = False
                self.disturbed_until = time.monotonic() + SETTLE_S + 6.0
        self.injected.append(f"{round(started, 1)} {kind} {target}")


@dataclass
class Monitor:
    """Invariants checked continuously; violations are collected for the test to report."""

    cluster: HaCluster
    faults: Faults
    deployment: str
    replicas: int
    max_surge: int
    acked_counts: list[int] = field(default_factory=list)  # ConfigMap counts acknowledged
    acked_versions: list[int] = field(default_factory=list)  # Deployment versions acknowledged
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    errors: int = 0
    _versions: dict[str, int] = field(default_factory=dict)  # what -> last resourceVersion

    def _forward(self, what: str, version: str) -> None:
        value = int(version or 0)
        if value < self._versions.get(what, 0):
            self.violations.append(
                f"resourceVersion of {what} went back: {self._versions[what]} -> {value}"
            )
        self._versions[what] = max(value, self._versions.get(what, 0))

    async def run(self, client: Client) -> None:
        while True:
            try:
                await self.check(client)
            except Exception:
                self.errors += 1  # an outage being injected: check again
            await asyncio.sleep(0.3)

    async def check(self, client: Client) -> None:
        counted = self.acked_counts[-1] if self.acked_counts else 0
        version = self.acked_versions[-1] if self.acked_versions else 0
        nodes_quiet = not self.faults.nodes_disturbed()
        config = await client.get(Kind.CONFIGMAP, "counter", namespace="default")
        self._forward("configmaps/counter", config.metadata.resource_version)  # type: ignore[attr-defined]
        stored = int(config.data.get("count", "0"))  # type: ignore[attr-defined]
        if stored < counted:
            self.violations.append(f"acknowledged count {counted} lost: the store has {stored}")
        deployment = await client.get(Kind.DEPLOYMENT, self.deployment, namespace="default")
        self._forward(f"deployments/{self.deployment}", deployment.metadata.resource_version)  # type: ignore[attr-defined]
        have = version_of(deployment)  # type: ignore[arg-type]
        if have < version:
            self.violations.append(f"acknowledged Deployment version {version} lost: {have}")
        listed = await client.list(Kind.POD, namespace="default")
        self._forward("pods (list)", listed.resource_version)
        active = [p for p in listed.items if _active(p, self.deployment)]  # type: ignore[arg-type]
        if nodes_quiet and not self.faults.nodes_disturbed():
            limit = self.replicas + self.max_surge
            if len(active) > limit:
                names = sorted(p.metadata.name for p in active)  # type: ignore[attr-defined]
                self.violations.append(f"{len(active)} pods > {limit} with all nodes up: {names}")
        for node in NODES:
            ids = await asyncio.to_thread(self.cluster.containers, node)
            per_pod: dict[str, int] = {}
            for cid in ids:
                pod = cid.split("_")[1]
                per_pod[pod] = per_pod.get(pod, 0) + 1
            twice = sorted(p for p, n in per_pod.items() if n > 1)
            if twice:
                self.violations.append(f"two containers of one pod on {node}: {twice}")
        self.checks += 1


def version_of(deployment: o.Deployment) -> int:
    for container in deployment.spec.template.spec.containers:
        for env in container.env:
            if env.name == "VERSION":
                return int(env.value)
    return 0


def _active(pod: o.Pod, app: str) -> bool:
    return (
        pod.metadata.labels.get("app") == app
        and not pod.metadata.HasField("deletion_timestamp")
        and pod.status.phase not in ("Succeeded", "Failed")
    )

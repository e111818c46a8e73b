"""Fencing on every return, with real processes (issue 12): an agent frozen (SIGSTOP) until its
replicas run elsewhere, then thawed, is not Ready while its stale containers still run, they
stop about a second after its return, and each replica then runs exactly once; the
replacements are new pods whose names and uids never existed (a control plane and 3 runc
agents, tests.fixtures.agents; `up`'s version with mutual TLS and CNI is
tests/e2e/test_agent_faults.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import Cluster, deployment, eventually, pods, wait_all_ready

pytestmark = [pytest.mark.root, pytest.mark.slow]

NAMESPACE = "default"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def _ready(client: Client, node: str) -> bool:
    found = await client.get(Kind.NODE, node)
    return any(c.type == "Ready" and c.status == "True" for c in found.status.conditions)  # type: ignore[attr-defined]


async def _running(client: Client) -> list[o.Pod]:
    return [p for p in await pods(client, NAMESPACE) if p.status.phase == "Running"]


async def test_a_thawed_agent_is_fenced_before_ready_and_replacements_are_new_pods(
    cluster: Cluster,
) -> None:
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(deployment("frozen", namespace=NAMESPACE, replicas=6))

        async def six() -> object:
            found = await _running(client)
            return len(found) == 6 or len(found)

        await eventually(six, "6 replicas never ran", within=60)
        first = await _running(client)
        ever_names = {p.metadata.name for p in first}
        ever_uids = {p.metadata.uid for p in first}
        victim, _ = Counter(p.spec.node_name for p in first).most_common(1)[0]
        stale = {c.id: c.pid for c in await cluster.containers(victim) if c.status == "running"}
        agent = cluster.agents[victim].pid
        assert stale and agent

        os.kill(agent, signal.SIGSTOP)
        try:

            async def elsewhere() -> object:
                found = await _running(client)
                moved = [p for p in found if p.spec.node_name != victim]
                return (len(moved) == 6 == len(found)) or [
                    (p.metadata.name, p.spec.node_name) for p in found
                ]

            await eventually(elsewhere, f"{victim}'s replicas never ran elsewhere", within=60)
        finally:
            os.kill(agent, signal.SIGCONT)
        back = time.monotonic()
        stopped_at = ready_at = None
        while stopped_at is None or ready_at is None:
            now = time.monotonic() - back
            assert now < 30, (
                f"{victim} did not come back (stale stopped {stopped_at}, ready {ready_at})"
            )
            ready = await _ready(client, victim)
            left = [cid for cid, pid in stale.items() if _alive(pid)]
            if left:
                assert not ready, (
                    f"{victim} counted as Ready {now:.2f} s after its return while its stale "
                    f"containers still ran: {left}"
                )
            elif stopped_at is None:
                stopped_at = now
            if ready and ready_at is None:
                ready_at = now
            await asyncio.sleep(0.02)
        print(f"\n{victim} thawed -> stale stopped {stopped_at:.2f} s, Ready {ready_at:.2f} s")

        async def once_each() -> object:
            running: Counter[str] = Counter()
            for name in cluster.agents:
                for c in await cluster.containers(name):
                    if c.status == "running":
                        running[c.pod] += 1
            wanted = {p.metadata.name for p in await pods(client, NAMESPACE)}
            return (set(running) == wanted and set(running.values()) == {1}) or running

        await eventually(once_each, "replicas do not run exactly once cluster-wide", within=30)
        for pod in await pods(client, NAMESPACE):
            if pod.metadata.uid in ever_uids:
                continue
            assert pod.metadata.name not in ever_names, (
                f"replacement {pod.metadata.name} reuses an evicted pod's name"
            )

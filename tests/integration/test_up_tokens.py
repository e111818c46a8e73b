"""`pilothouse up` keeps its join tokens out of every process's command line and environment
(which any local user reads through `ps` and /proc), and uses one short-lived single-use token
per node, bound to that node's name (issue 11, item 3)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from pilothouse import credentials
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests.fixtures.cluster import LocalClusterRun

pytestmark = [pytest.mark.root, pytest.mark.slow]


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def shown(pid: int) -> str:
    """What other users can read of a process: its command line (`ps`), and its environment
    as its owner and root can."""
    text = []
    for part in ("cmdline", "environ"):
        try:
            text.append(Path(f"/proc/{pid}/{part}").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return " ".join(text)


async def list_tokens(cluster: LocalClusterRun) -> list[api.BootstrapToken]:
    admin = cluster.admin()
    assert admin is not None
    server = str(cluster.info()["controlplane"])
    async with credentials.secure_channel(server, admin) as channel:
        listed = await api_grpc.TokensStub(channel).ListTokens(api.ListTokensRequest(), timeout=10)
    return list(listed.tokens)


async def test_no_process_up_starts_shows_a_join_token(local_cluster: LocalClusterRun) -> None:
    started = await asyncio.to_thread(local_cluster.up, nodes=2, network="host")
    assert started.returncode == 0, f"`up -d --nodes 2` failed:\n{started.stderr}"
    assert local_cluster.secure, "up did not make a secure cluster"

    tokens = await list_tokens(local_cluster)
    by_node = {t.node_name: t for t in tokens}
    assert sorted(by_node) == ["node-1", "node-2"], (
        f"up should make one join token per node, bound to it: {tokens}"
    )
    for node, token in by_node.items():
        assert token.single_use and token.state == "used", f"{node}'s token: {token}"
        lifetime = token.expires.seconds - token.created.seconds
        assert lifetime <= 600, f"{node}'s join token lives {lifetime} s"
        assert not (local_cluster.layout.node(node) / "join-token").exists(), (
            f"{node}'s spent join token file was left behind"
        )

    supervisor = local_cluster.supervisor()
    assert supervisor is not None
    pids = descendants(supervisor.pid) | set(local_cluster.running_processes())
    assert len(pids) >= 4, f"expected the supervisor, registry, control plane, agents: {pids}"
    secrets = [re.compile(rf"\b{re.escape(t.id)}\.[a-z0-9]{{16}}\b") for t in tokens]
    leaks = {
        pid: text[:300]
        for pid in sorted(pids)
        if (text := shown(pid)) and any(secret.search(text) for secret in secrets)
    }
    assert not leaks, f"processes show a join token to `ps`: {leaks}"

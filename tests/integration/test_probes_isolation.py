"""Probes cannot reach the node (issue 11): what a listener in the node's namespace sees.

The listener plays etcd, the agent or a metadata service on the node's loopback. Pods are
pushed straight to an agent (as an old object, or a control plane with looser flags, would):
- a readinessProbe with `host: 127.0.0.1` is refused by the agent by default: the pod stays
  not Ready with the refusal in its Ready condition, and nothing connects to the listener;
- with `--allow-probe-host` the probe is made, but from the pod's own network namespace: it
  fails with "connection refused" (nothing listens in the pod) and the listener still sees
  nothing; a probe without host on the listener's port fails the same way;
- a header value carrying CR/LF makes no request at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.integration.test_agent import make_pod, wait_for
from tests.integration.test_probes import ready_message, runc_agent

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
async def node_listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP listener on the node's loopback; every connection's first bytes are recorded."""
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await asyncio.wait_for(reader.read(4096), 2) or b"<connected>")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            seen.append(b"<connected>")
        finally:
            writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def _probed_pod(name: str, port: int, *, host: str = "", header: str = "") -> objects_pb2.Pod:
    pod = make_pod(name, "exec sleep 3600")
    probe = pod.spec.containers[0].readiness_probe
    probe.http_get.path = "/"
    probe.http_get.port.number_value = port
    probe.http_get.host = host
    if header:
        probe.http_get.http_headers.add(name="X-Probe", value=header)
    probe.period_seconds = 1
    probe.failure_threshold = 1
    return pod


async def _ready_messages(address: str, pods: list[objects_pb2.Pod]) -> dict[str, str]:
    """Each pod's Ready message once every pod has a probe failure in it."""
    names = [p.metadata.name for p in pods]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.NodeAgentStub(channel)
        resp = await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=pods))
        assert dict(resp.rejected) == {}
        seen = await wait_for(
            stub,
            "not Ready with a probe failure",
            lambda s: all(
                s.get(n) is not None and "Readiness probe failed" in ready_message(s[n])
                for n in names
            ),
        )
    return {n: ready_message(seen[n]) for n in names}


async def test_probes_never_reach_a_listener_in_the_node_namespace(
    node_listener: tuple[int, list[bytes]],
) -> None:
    port, seen = node_listener
    async with runc_agent("--backoff-initial", "0.2") as agent:
        messages = await _ready_messages(
            agent.address,
            [
                _probed_pod("outside", port, host="127.0.0.1"),
                _probed_pod("own", port),
                _probed_pod("smuggler", port, header="a\r\n\r\nGET /v3/kv/put HTTP/1.1"),
            ],
        )
    assert 'probe host "127.0.0.1" is outside the pod: refused' in messages["outside"], messages
    assert "connection refused" in messages["own"], messages
    assert "not valid HTTP" in messages["smuggler"], messages
    assert seen == [], f"a probe reached the node's listener: {seen}"


async def test_an_allowed_probe_host_is_dialled_from_the_pod_not_the_node(
    node_listener: tuple[int, list[bytes]],
) -> None:
    port, seen = node_listener
    async with runc_agent("--backoff-initial", "0.2", "--allow-probe-host") as agent:
        messages = await _ready_messages(
            agent.address, [_probed_pod("outside", port, host="127.0.0.1")]
        )
    assert "connection refused" in messages["outside"], messages
    assert seen == [], f"a probe reached the node's listener: {seen}"

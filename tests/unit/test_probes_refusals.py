"""What a probe may not do (issue 11): smuggle a request, leave its pod, run from the node.

A listener in the node's network namespace plays what an attacker would aim a probe at (etcd,
the agent, a metadata service): whatever the probe says, it must see no request, and the
probe's failure must say why.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from nodeagent.probes import Target
from nodeagent.probes.handlers import ProbeHandlers
from pilothouse.v1 import objects_pb2
from tests.unit.test_probes_handlers import http_server


def _probe(
    port: int, *, host: str = "", header: tuple[str, str] | None = None
) -> objects_pb2.Probe:
    p = objects_pb2.Probe()
    p.http_get.path = "/"
    p.http_get.port.number_value = port
    p.http_get.host = host
    if header is not None:
        p.http_get.http_headers.add(name=header[0], value=header[1])
    return p


async def test_a_header_with_cr_lf_sends_no_request_at_all() -> None:
    # Refused at apply; an object stored before that check could still hold one.
    handlers = ProbeHandlers(None)
    target = Target(container_id="c", host_network=True)
    smuggled = ("X-A", "b\r\n\r\nGET /v3/kv/put HTTP/1.1\r\nHost: etcd")
    async with http_server({"/": 200}) as (port, requests):
        result = await handlers.check(_probe(port, header=smuggled), target, time_limit=2)
    assert not result.ok and "not valid HTTP" in result.message, result
    assert requests == [], f"the listener saw a request: {requests}"


async def test_a_probe_host_is_refused_by_default_and_nothing_is_dialled() -> None:
    handlers = ProbeHandlers(None)
    target = Target(container_id="c", pod_ip="10.244.1.7", host_network=True)
    async with http_server({"/": 200}) as (port, requests):
        result = await handlers.check(_probe(port, host="127.0.0.1"), target, time_limit=2)
        tcp = objects_pb2.Probe()
        tcp.tcp_socket.port.number_value = port
        tcp.tcp_socket.host = "127.0.0.1"
        tcp_result = await handlers.check(tcp, target, time_limit=2)
    assert result.message == (
        'probe host "127.0.0.1" is outside the pod: refused (this node does not allow probes '
        "to leave their pod; an admin may allow it with --allow-probe-host)"
    )
    assert tcp_result.message == result.message
    assert requests == [], f"the listener saw a request: {requests}"


async def test_without_the_container_process_no_probe_runs_from_the_node() -> None:
    handlers = ProbeHandlers(None, allow_host=True)
    target = Target(container_id="c")  # pid unknown, pod with a network of its own
    async with http_server({"/": 200}) as (port, requests):
        result = await handlers.check(_probe(port), target, time_limit=2)
    assert not result.ok and "never made from the node's network" in result.message, result
    assert requests == []


@pytest.fixture
def pod_namespace_process() -> Iterator[int]:
    """A process in a network namespace of its own (a pod's), ended after the test."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert proc.poll() is None and time.monotonic() < deadline, "unshare --net failed"
            time.sleep(0.01)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


async def test_an_allowed_probe_host_is_still_dialled_from_the_pod(
    pod_namespace_process: int,
) -> None:
    handlers = ProbeHandlers(None, allow_host=True)
    target = Target(container_id="c", pid=pod_namespace_process, pod_ip="10.244.1.7")
    async with http_server({"/": 200}) as (port, requests):
        explicit = await handlers.check(_probe(port, host="127.0.0.1"), target, time_limit=2)
        implicit = await handlers.check(_probe(port), target, time_limit=2)
    assert "connection refused" in explicit.message or "unreachable" in explicit.message, explicit
    assert not implicit.ok, implicit
    assert requests == [], f"the node's listener saw a probe: {requests}"

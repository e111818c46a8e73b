"""Probe handlers against real loopback servers and a scripted executor: what each check says.

A user reads these results as `describe pod` text, so the messages are the kubelet's:
"HTTP probe failed with statuscode: 404", "dial tcp …: connect: connection refused", a
command's own output, "… timed out".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nodeagent.probes import Target
from nodeagent.probes.handlers import (
    ExecOutcome,
    ProbeHandlers,
    Unprobed,
    for_runtime,
    resolve_port,
)
from nodeagent.runtime.fake import FakeRuntime
from pilothouse.v1 import objects_pb2

# The test servers listen in the test's own namespace: the targets play pods on the node's
# network (the only pods probed from the agent's namespace).
TARGET = Target(container_id="default_web_app_0", ports={"http": 0}, host_network=True)


@asynccontextmanager
async def http_server(
    answers: dict[str, int], *, silent: bool = False
) -> AsyncIterator[tuple[int, list[str]]]:
    """A tiny HTTP server on a free loopback port: path -> status; records request heads."""
    requests: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            requests.append(head)
            if silent:
                await asyncio.sleep(30)
            path = head.split()[1]
            code = answers.get(path, 404)
            writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], requests
    finally:
        server.close()


def http_probe(port: int | str, path: str = "/", **kwargs: object) -> objects_pb2.Probe:
    p = objects_pb2.Probe()
    p.http_get.path = path
    if isinstance(port, int):
        p.http_get.port.number_value = port
    else:
        p.http_get.port.string_value = port
    for k, v in kwargs.items():
        setattr(p.http_get, k, v)
    return p


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_http_get_passes_on_2xx_and_3xx_and_fails_on_4xx_with_the_status_code() -> None:
    handlers = ProbeHandlers(None)
    async with http_server({"/ok": 200, "/moved": 301, "/gone": 404}) as (port, requests):
        ok = await handlers.check(http_probe(port, "/ok"), TARGET, time_limit=2)
        moved = await handlers.check(http_probe(port, "moved"), TARGET, time_limit=2)
        gone = await handlers.check(http_probe(port, "/gone"), TARGET, time_limit=2)
    assert ok.ok, f"a 200 answer failed the probe: {ok}"
    assert moved.ok, "a redirect (3xx) must count as success, as in Kubernetes"
    assert not gone.ok and gone.message == "HTTP probe failed with statuscode: 404"
    assert requests[1].startswith("GET /moved HTTP/1.1"), "a path without / was not normalized"
    assert "User-Agent: kube-probe/" in requests[0]


async def test_http_get_sends_the_probe_headers_and_resolves_named_ports() -> None:
    handlers = ProbeHandlers(None)
    async with http_server({"/": 200}) as (port, requests):
        probe = http_probe("http")
        probe.http_get.http_headers.add(name="Host", value="example.test")
        probe.http_get.http_headers.add(name="X-Probe", value="yes")
        target = Target(container_id="c", ports={"http": port}, host_network=True)
        result = await handlers.check(probe, target, time_limit=2)
    assert result.ok, result
    assert "Host: example.test\r\n" in requests[0], "the probe's Host header was not used"
    assert "X-Probe: yes\r\n" in requests[0]


async def test_http_get_connection_refused_and_timeout_read_like_the_kubelet() -> None:
    handlers = ProbeHandlers(None)
    port = free_port()
    refused = await handlers.check(http_probe(port, "/healthz"), TARGET, time_limit=2)
    assert refused.message == (
        f'Get "http://127.0.0.1:{port}/healthz": dial tcp 127.0.0.1:{port}: '
        "connect: connection refused"
    )
    async with http_server({}, silent=True) as (slow_port, _):
        slow = await handlers.check(http_probe(slow_port), TARGET, time_limit=0.2)
    assert not slow.ok and "context deadline exceeded" in slow.message, slow


async def test_http_get_uses_the_pod_ip_when_the_pod_has_one() -> None:
    handlers = ProbeHandlers(None)
    async with http_server({"/": 200}) as (port, requests):
        target = Target(container_id="c", pod_ip="127.0.0.1", host_network=True)
        assert (await handlers.check(http_probe(port), target, time_limit=2)).ok
    assert f"Host: 127.0.0.1:{port}" in requests[0]


async def test_tcp_socket_passes_when_a_connection_opens() -> None:
    handlers = ProbeHandlers(None)
    async with http_server({}) as (port, _):
        probe = objects_pb2.Probe()
        probe.tcp_socket.port.number_value = port
        assert (await handlers.check(probe, TARGET, time_limit=2)).ok
    closed = free_port()
    probe.tcp_socket.port.number_value = closed
    result = await handlers.check(probe, TARGET, time_limit=2)
    assert result.message == f"dial tcp 127.0.0.1:{closed}: connect: connection refused"


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a network namespace needs root")
async def test_connections_are_made_from_the_target_process_network_namespace() -> None:
    # Our own pid: the setns path is taken (into the namespace we are already in).
    handlers = ProbeHandlers(None)
    async with http_server({"/": 200}) as (port, _):
        target = Target(container_id="c", pid=os.getpid())
        assert (await handlers.check(http_probe(port), target, time_limit=2)).ok
    gone = Target(container_id="c", pid=2**22 + 12345)  # no such process
    result = await handlers.check(http_probe(port), gone, time_limit=2)
    assert not result.ok and "cannot open the container's network namespace" in result.message, (
        result
    )


class ScriptedExec:
    def __init__(self, outcome: ExecOutcome | None, delay: float = 0) -> None:
        self.outcome = outcome
        self.delay = delay
        self.calls: list[tuple[str, list[str]]] = []

    async def exec(self, container_id: str, argv: list[str], *, time_limit: float) -> ExecOutcome:
        self.calls.append((container_id, argv))
        if self.delay > time_limit:
            raise TimeoutError
        assert self.outcome is not None
        return self.outcome


def exec_probe(*argv: str) -> objects_pb2.Probe:
    return objects_pb2.Probe(exec=objects_pb2.ExecAction(command=list(argv)))


async def test_exec_passes_on_exit_zero_and_reports_the_output_otherwise() -> None:
    ok = ScriptedExec(ExecOutcome(0, ""))
    assert (await ProbeHandlers(ok).check(exec_probe("true"), TARGET, time_limit=1)).ok
    assert ok.calls == [("default_web_app_0", ["true"])], "exec ran in the wrong container"
    bad = ProbeHandlers(ScriptedExec(ExecOutcome(1, "cat: can't open '/tmp/healthy'\n")))
    result = await bad.check(exec_probe("cat", "/tmp/healthy"), TARGET, time_limit=1)
    assert result.message == "cat: can't open '/tmp/healthy'"
    silent = ProbeHandlers(ScriptedExec(ExecOutcome(3, "")))
    result = await silent.check(exec_probe("false"), TARGET, time_limit=1)
    assert result.message == 'command "false" exited with 3'


async def test_exec_timeout_and_missing_executor_are_failures() -> None:
    slow = ProbeHandlers(ScriptedExec(None, delay=5))
    result = await slow.check(exec_probe("sleep", "5"), TARGET, time_limit=1)
    assert result.message == 'command "sleep 5" timed out'
    none = await ProbeHandlers(None).check(exec_probe("true"), TARGET, time_limit=1)
    assert not none.ok and "not supported" in none.message


async def test_a_runtime_exec_answering_a_pair_is_understood() -> None:
    class Runtime:
        def __init__(self) -> None:
            self.limits: list[float] = []

        async def exec(self, container_id: str, argv: list[str], timeout: float):  # noqa: ASYNC109
            self.limits.append(timeout)
            return (2, b"nope")

    runtime = Runtime()
    handlers = for_runtime(runtime)
    result = await handlers.check(exec_probe("x"), TARGET, time_limit=3)
    assert result.message == "nope" and runtime.limits == [3]


def test_the_fake_runtime_gets_no_real_probes_and_runc_gets_runc_exec(tmp_path: Path) -> None:
    assert isinstance(for_runtime(FakeRuntime()), Unprobed), (
        "hollow nodes would probe made-up pids, i.e. unrelated host processes"
    )

    class RuncLike:
        runc = "/usr/bin/runc"
        state_dir = tmp_path

    assert isinstance(for_runtime(RuncLike()), ProbeHandlers)


async def test_unprobed_nodes_pass_every_probe_with_an_action() -> None:
    assert (await Unprobed().check(exec_probe("x"), TARGET, time_limit=1)).ok
    assert not (await Unprobed().check(objects_pb2.Probe(), TARGET, time_limit=1)).ok


def test_ports_resolve_by_number_or_name_and_bad_ones_are_explained() -> None:
    target = Target(container_id="c", ports={"http": 8080})
    assert resolve_port(80.0, target) == 80
    assert resolve_port("http", target) == 8080
    assert resolve_port("8081", target) == 8081
    with pytest.raises(ValueError, match='port "metrics" is not a named port'):
        resolve_port("metrics", target)
    with pytest.raises(ValueError, match="invalid port number"):
        resolve_port(70000, target)

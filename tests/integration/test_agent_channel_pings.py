"""The control plane's channel to an agent pings it (issue 17), over real gRPC.

Node sync holds a WatchPods stream open to every agent; between pod changes nothing flows on
it. An agent that freezes (SIGSTOP, a paused VM) or whose link is cut must end that session
within the channel's ping interval + ping timeout, so that a new one starts, not after gRPC's
default one-minute wait for a ping's answer: the channel pings while the stream is quiet and
gives up on an unanswered ping after its timeout. A live agent's quiet stream is left open.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from controlplane.nodes import agent as agent_module
from controlplane.nodes.agent import AgentCallFailed, AgentClient

ROOT = Path(__file__).resolve().parents[2]

# An agent's gRPC server whose pod watch sends one event and then nothing.
AGENT = """
import asyncio
import grpc
from pilothouse.process.grpcserver import AGENT_LIMITS
from pilothouse.v1 import agent_pb2, agent_pb2_grpc

class Quiet(agent_pb2_grpc.NodeAgentServicer):
    async def WatchPods(self, request, context):
        yield agent_pb2.PodStatusEvent(type=agent_pb2.PodStatusEvent.UPDATED)
        await asyncio.Event().wait()

async def main():
    server = grpc.aio.server(options=AGENT_LIMITS.options())
    agent_pb2_grpc.add_NodeAgentServicer_to_server(Quiet(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""

INTERVAL_S = 0.5
TIMEOUT_S = 1.0


async def test_a_quiet_pod_watch_stays_open_and_a_frozen_agents_ends_within_the_ping_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_module, "PING_INTERVAL_MS", int(INTERVAL_S * 1000))
    monkeypatch.setattr(agent_module, "PING_TIMEOUT_MS", int(TIMEOUT_S * 1000))
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AGENT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert agent.stdout is not None
        port = int(await asyncio.wait_for(agent.stdout.readline(), 30))
        async with AgentClient(f"127.0.0.1:{port}", node="n1") as client:
            changes = client.watch_pods()
            await asyncio.wait_for(anext(changes), 10)
            ended = asyncio.ensure_future(anext(changes))

            # Quiet for many ping intervals: the pings are answered and the watch stays open.
            done, _ = await asyncio.wait({ended}, timeout=8 * INTERVAL_S)
            assert not done, f"a live agent's quiet pod watch ended: {ended.exception()!r}"

            os.kill(agent.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            with pytest.raises(AgentCallFailed) as failed:
                await asyncio.wait_for(ended, 30)
            took = time.monotonic() - frozen
            assert failed.value.unreachable, failed.value
            # gRPC's own wait for a ping's answer is a minute; ours is the timeout. The bound
            # leaves room for a loaded machine, and is still far below the minute.
            assert took < INTERVAL_S + TIMEOUT_S + 10, f"noticed only after {took:.1f} s"
            await changes.aclose()
    finally:
        agent.send_signal(signal.SIGCONT)
        agent.kill()
        await agent.wait()

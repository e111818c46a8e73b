"""The open Heartbeats stream is the heartbeat (issue 17), over real gRPC with HTTP/2 pings.

- An agent in its own process sends one beat message and then nothing: the control plane
  keeps hearing it for several grace periods, because the API server's pings on its
  connection are answered; frozen with SIGSTOP (its gRPC core stops answering), its stream
  ends within the ping timeout and it is silent from then on, as a dead agent must be.
- The agent's `Registration` sends a message when the stream opens, when its status changes
  (at the next beat) and once per status interval, not once per heartbeat interval.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from controlplane.api.server import ApiServer
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from nodeagent.registration import Registration
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

# One beat on a stream, then nothing but answering pings (its gRPC core does that).
AGENT = """
import asyncio, sys
import grpc
from nodeagent.heartbeats import BeatSender
from pilothouse.v1 import controlplane_pb2 as api, controlplane_pb2_grpc as api_grpc

async def main():
    async with grpc.aio.insecure_channel(sys.argv[1]) as channel:
        beats = BeatSender(api_grpc.NodeRegistryStub(channel))
        await beats.send(api.HeartbeatRequest(node_name="n1", instance_id="i-1"), deadline_s=10)
        print("beat", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


class CountingRegistry(NodeRegistry):
    """Keeps the beat messages' statuses (an open stream's pings are not messages)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.statuses: list[objects_pb2.NodeStatus | None] = []

    @property
    def messages(self) -> int:
        return len(self.statuses)

    async def heartbeat(self, name, *, instance_id, status=None):  # type: ignore[no-untyped-def]
        self.statuses.append(status)
        await super().heartbeat(name, instance_id=instance_id, status=status)


async def test_an_open_stream_is_heard_until_its_agent_stops_answering_pings() -> None:
    objects = ObjectStore(MemoryStore())
    # Pings every 0.5 s, answered within 2.5 s (3 - 0.5).
    registry = CountingRegistry(objects, grace_period=3.0, heartbeat_interval=0.5)
    assert registry.ping_timeout == 2.5
    server = ApiServer(objects=objects, listen="127.0.0.1:0", registry=registry)
    address = await server.start()
    agent: asyncio.subprocess.Process | None = None
    try:
        await registry.register(factories.node_report(name="n1"), instance_id="i-1")
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            AGENT,
            address,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        assert agent.stdout is not None
        line = await asyncio.wait_for(agent.stdout.readline(), 30)
        assert line.strip() == b"beat", f"the agent process did not beat: {line!r}"
        await eventually(lambda: registry.streaming() == ["n1"], "the stream was not held")

        # Two grace periods with no message: still heard, at every look.
        started = time.monotonic()
        looks = 0
        while time.monotonic() - started < 2 * registry.grace_period:
            heard = registry.last_seen("n1")
            assert heard is not None and time.time() - heard < 0.5, (
                f"an agent whose stream is open went unheard for {time.time() - heard:.1f} s"
                if heard is not None
                else "never heard"
            )
            looks += 1
            await asyncio.sleep(0.1)
        assert registry.messages == 1, f"{registry.messages} beat messages; one was expected"
        assert looks > 5

        # Frozen: its gRPC core no longer answers pings, the server ends the connection and
        # the node's last proof of life stops moving.
        os.kill(agent.pid, signal.SIGSTOP)
        frozen = time.time()
        await eventually(lambda: registry.streaming() == [], "the frozen agent's stream held on")
        heard = registry.last_seen("n1")
        assert heard is not None and heard <= time.time() - registry.heartbeat_interval + 0.2
        assert heard < frozen + registry.heartbeat_interval + registry.ping_timeout
    finally:
        if agent is not None:
            agent.kill()
            await agent.wait()
        await server.stop()


async def run_agent(  # type: ignore[no-untyped-def]
    objects: ObjectStore, registry: NodeRegistry, status
) -> tuple[Registration, ApiServer, asyncio.Task[None]]:
    server = ApiServer(objects=objects, listen="127.0.0.1:0", registry=registry)
    address = await server.start()
    registration = Registration(
        server=address,
        node_name="n1",
        instance_id="agent-a",
        node_status=status,
        agent_address="127.0.0.1:7071",
    )
    task = asyncio.create_task(registration.run())
    return registration, server, task


def reporting(cpu: dict[str, str]):  # type: ignore[no-untyped-def]
    def status() -> objects_pb2.NodeStatus:
        reported = objects_pb2.NodeStatus()
        reported.capacity.update({"cpu": cpu["value"], "memory": "1Gi", "pods": "10"})
        reported.allocatable.update({"cpu": cpu["value"], "memory": "1Gi", "pods": "10"})
        return reported

    return status


async def test_the_agent_sends_a_message_only_when_its_status_changes() -> None:
    # A status interval (30 s) far longer than the test: every message here is news.
    objects = ObjectStore(MemoryStore())
    registry = CountingRegistry(objects, heartbeat_interval=0.05, persist_interval=30.0)
    cpu = {"value": "1"}
    registration, server, task = await run_agent(objects, registry, reporting(cpu))
    try:
        await eventually(lambda: registry.streaming() == ["n1"], "the agent's stream not held")
        assert registration.status_interval == 30.0
        await asyncio.sleep(2.5)  # 50 heartbeat intervals to watch, not a wait for something
        assert registry.messages == 1, f"{registry.messages} messages with an unchanged status"
        assert registry.last_seen("n1") is not None

        cpu["value"] = "2"  # news: sent at the next beat, not a status interval (30 s) later
        await eventually(
            lambda: (registry.statuses[-1] or objects_pb2.NodeStatus()).capacity["cpu"] == "2",
            "the new capacity did not come before the status interval",
            within=10.0,
        )
        assert registry.messages == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


async def test_an_unchanged_status_is_sent_again_every_status_interval() -> None:
    objects = ObjectStore(MemoryStore())
    registry = CountingRegistry(objects, heartbeat_interval=0.05, persist_interval=0.3)
    registration, server, task = await run_agent(objects, registry, reporting({"value": "1"}))
    try:
        await eventually(lambda: registry.messages >= 4, "the status was not sent again")
        assert registration.status_interval == 0.3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()


class SlowRegistry(CountingRegistry):
    """Answers the first beat message late, as a control plane just started under a thousand
    reconnecting agents does."""

    def __init__(self, *args, late: float, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.late = late

    async def heartbeat(self, name, *, instance_id, status=None):  # type: ignore[no-untyped-def]
        if not self.statuses:
            await asyncio.sleep(self.late)
        await super().heartbeat(name, instance_id=instance_id, status=status)


async def test_a_late_answer_to_a_beat_is_waited_for_not_sent_again() -> None:
    # Beats every 0.2 s; the first answer takes 2 s. An agent that gave up on it after a beat
    # interval (or a second) and sent it again on a new stream would add a stream and a beat
    # for every wait, which a busy control plane then has to answer too.
    objects = ObjectStore(MemoryStore())
    registry = SlowRegistry(objects, heartbeat_interval=0.2, persist_interval=30.0, late=2.0)
    _, server, task = await run_agent(objects, registry, reporting({"value": "1"}))
    try:
        await eventually(lambda: registry.streaming() == ["n1"], "the agent's stream not held")
        assert registry.messages == 1, f"{registry.messages} beat messages; one was late"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()

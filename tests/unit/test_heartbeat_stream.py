"""Heartbeats as messages of one Heartbeats stream (`nodeagent.heartbeats.BeatSender`) against
the real NodeRegistry servicer over gRPC: beats are recorded one by one on one call; a beat the
registry refuses (no such node) ends the stream with Heartbeat's status (NOT_FOUND: register
again), which the sender raises at its next beat, and the beat after opens a new stream; a
control plane without the stream gets Heartbeat calls instead.
"""

from __future__ import annotations

import grpc
import pytest

from controlplane.api.server import ApiServer
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from nodeagent.heartbeats import ACK_EVERY, BeatSender
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests import factories
from tests.unit.waiting import eventually


async def test_beats_go_on_one_stream_and_a_refusal_ends_it_with_heartbeats_status() -> None:
    objects = ObjectStore(MemoryStore())
    registry = NodeRegistry(objects)
    server = ApiServer(objects=objects, listen="127.0.0.1:0", registry=registry)
    address = await server.start()
    try:
        await registry.register(factories.node_report(name="n1"), instance_id="i-1")
        async with grpc.aio.insecure_channel(address) as channel:
            beats = BeatSender(api_grpc.NodeRegistryStub(channel))
            beat = api.HeartbeatRequest(node_name="n1", instance_id="i-1")
            seen = []
            for _ in range(3):
                await beats.send(beat, deadline_s=5.0)
                seen.append(registry.last_seen("n1"))
            assert seen == sorted(seen) and not beats.calls_only
            stream = beats._call
            await beats.send(beat, deadline_s=5.0)
            assert beats._call is stream, "each beat opened a new call"

            # An unanswered beat refused: the refusal ends the stream; the next beat says so.
            assert beats._sent % ACK_EVERY != 0, "the next beat would ask for an answer"
            await beats.send(
                api.HeartbeatRequest(node_name="nobody", instance_id="x"), deadline_s=5.0
            )
            await eventually(lambda: beats._ended is not None, "the refusal ended the stream")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await beats.send(beat, deadline_s=5.0)
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert "register again" in (refused.value.details() or "")
            before = registry.last_seen("n1")
            await beats.send(beat, deadline_s=5.0)  # a new stream
            assert registry.last_seen("n1") >= before  # type: ignore[operator]
            beats.close()
    finally:
        await server.stop()


class CallsOnly(api_grpc.NodeRegistryServicer):
    """A control plane from before the stream: Heartbeat calls only."""

    def __init__(self) -> None:
        self.beats = 0

    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        self.beats += 1
        return api.HeartbeatResponse()


async def test_a_control_plane_without_the_stream_gets_heartbeat_calls() -> None:
    servicer = CallsOnly()
    server = grpc.aio.server()
    api_grpc.add_NodeRegistryServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            beats = BeatSender(api_grpc.NodeRegistryStub(channel))
            beat = api.HeartbeatRequest(node_name="n1", instance_id="i-1")
            await beats.send(beat, deadline_s=5.0)
            await beats.send(beat, deadline_s=5.0)
            assert beats.calls_only and servicer.beats == 2
    finally:
        await server.stop(0)

"""Events about a node itself (image garbage collection), reported by its agent on WatchPods as
NODE reports, become Event objects about the Node (in-memory store, in-process fake agent).

What a user would see in `describe node n1`: Warning FreeDiskSpaceFailed (kubelet's words)
about Node n1, from pilothouse-agent on n1; an agent cannot write events about another node.
"""

from __future__ import annotations

import asyncio

from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, objects_pb2
from tests.unit.nodesync_support import eventually, make_pod
from tests.unit.test_nodesync_events import Plane, ReportingAgent

FAILED = (
    "Failed to garbage collect required amount of images. Attempted to free 2171699 bytes, "
    "but only found 0 bytes eligible to free."
)


def node_event(node: str, *, message: str = FAILED, host: str = "") -> objects_pb2.Event:
    """An event about a node as the agent sends it (nodeagent.pods.events.NodeEvents)."""
    event = objects_pb2.Event(reason="FreeDiskSpaceFailed", message=message, type="Warning")
    event.involved_object.api_version, event.involved_object.kind = "v1", "Node"
    event.involved_object.name = node
    event.source.component, event.source.host = "pilothouse-agent", host or node
    event.count = 1
    return event


class NodeReportingAgent(ReportingAgent):
    def report_node_events(self, events: list[objects_pb2.Event]) -> None:
        message = agent_pb2.PodStatusEvent(type=agent_pb2.PodStatusEvent.NODE, events=events)
        for queue in self._watchers:
            queue.put_nowait(message)


async def test_node_events_become_event_objects_about_the_node_and_only_its_own() -> None:
    agent = await NodeReportingAgent().start()
    try:
        async with Plane() as plane:
            await plane.start(agent, make_pod("web-1", "n1"))
            agent.report_node_events(
                [
                    node_event("n2", message="about another node"),
                    node_event("n1", message="lying host", host="n2"),
                    node_event("n1"),
                ]
            )

            async def about_nodes() -> list[objects_pb2.Event]:
                listing = await plane.objects.list(Kind.EVENT, "default")
                return [
                    e
                    for e in listing.items
                    if e.involved_object.kind == "Node" and e.reason == "FreeDiskSpaceFailed"
                ]

            async def written() -> object:
                found = await about_nodes()
                return [e.message for e in found] == [FAILED] or [e.message for e in found]

            await eventually(written, "describe node n1 would not show the agent's event")
            await asyncio.sleep(0.2)
            [event] = await about_nodes()
    finally:
        await agent.stop()
    ref = event.involved_object
    assert (ref.kind, ref.name) == ("Node", "n1"), ref
    assert event.metadata.namespace == "default", "a node's events live in default"
    assert (event.type, event.source.component, event.source.host) == (
        "Warning",
        "pilothouse-agent",
        "n1",
    )

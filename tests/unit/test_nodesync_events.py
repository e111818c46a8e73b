"""Pod events reported by agents become Event objects (in-memory store, in-process fake agents).

What a user would see in `describe pod` / `get events`: the agent's probe failures arrive as
one Event per kind of failure with a growing count, about the pod (kind, namespace, name, uid,
fieldPath of the container), from pilothouse-agent on the pod's node, with the agent's first
and last timestamps; an agent cannot write events about pods that are not its own; and the
Event objects of one name are written at most once per second however often they are reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from controlplane.events import EventRecorder, EventWriter, reported_name
from controlplane.nodes.agent import (
    AgentCallFailed,
    AgentClient,
    Connect,
    PodChange,
    PodChangeType,
    connector,
)
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store.memory import MemoryStore
from nodeagent.api.nodeinfo import NodeFacts
from nodeagent.api.servicer import NodeAgentServicer
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests import factories
from tests.unit import nodesync_support, pods_support
from tests.unit.nodesync_support import FakeAgent, eventually, make_pod

T0 = 1_700_000_000  # seconds


# -- the agent's side of the stream ------------------------------------------------------------


class ReportingAgent(FakeAgent):
    def report_events(
        self,
        pod: objects_pb2.Pod,
        events: list[objects_pb2.Event],
        *,
        removed: bool = False,
    ) -> None:
        observed = objects_pb2.Pod()
        observed.metadata.CopyFrom(pod.metadata)
        observed.status.phase = "Running"
        kind = agent_pb2.PodStatusEvent.REMOVED if removed else agent_pb2.PodStatusEvent.UPDATED
        message = agent_pb2.PodStatusEvent(type=kind, pod=observed, events=events)
        for queue in self._watchers:
            queue.put_nowait(message)

    @property
    def watching(self) -> bool:
        return bool(self._watchers)


def agent_event(
    pod: objects_pb2.Pod,
    *,
    reason: str = "Unhealthy",
    message: str = "Liveness probe failed: HTTP probe failed with statuscode: 500",
    type: str = "Warning",
    at: int = T0,
    count: int = 1,
    host: str = "n1",
) -> objects_pb2.Event:
    """An event as the agent sends it (see nodeagent.pods.events)."""
    event = objects_pb2.Event(reason=reason, message=message, type=type, count=count)
    ref = event.involved_object
    ref.api_version, ref.kind = "v1", "Pod"
    ref.namespace, ref.name, ref.uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
    ref.field_path = "spec.containers{main}"
    event.source.component, event.source.host = "pilothouse-agent", host
    event.first_timestamp.FromSeconds(at)
    event.last_timestamp.FromSeconds(at)
    return event


# -- the control plane's client ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeWithEvents:
    """PodChange as controlplane/nodes/agent.py is asked to make it: with the pod's events."""

    type: PodChangeType
    pod: objects_pb2.Pod
    events: tuple[objects_pb2.Event, ...] = ()


class EventsClient(AgentClient):
    """AgentClient whose watch_pods also hands over the events (until agent.py does)."""

    async def watch_pods(self) -> AsyncIterator[PodChange]:  # type: ignore[override]
        call = self._stub.WatchPods(agent_pb2.WatchPodsRequest())
        types = {
            agent_pb2.PodStatusEvent.UPDATED: PodChangeType.UPDATED,
            agent_pb2.PodStatusEvent.REMOVED: PodChangeType.REMOVED,
        }
        try:
            async for message in call:
                yield ChangeWithEvents(types[message.type], message.pod, tuple(message.events))  # type: ignore[misc]
        except grpc.aio.AioRpcError as error:
            raise self._failed("WatchPods", error) from None
        finally:
            call.cancel()
        raise AgentCallFailed("UNAVAILABLE", "the agent ended its pod watch")


def connect_with_events() -> Connect:
    if "events" in {f.name for f in dataclasses.fields(PodChange)}:
        return connector(timeout=1.0)  # agent.py decodes the events itself

    def connect(address: str, node: str) -> AgentClient:
        return EventsClient(address, node=node, timeout=1.0)

    return connect


class Plane(nodesync_support.Plane):
    """The node-sync Plane with an event recorder, its agents' events decoded."""

    def __init__(self) -> None:
        super().__init__(events_component="node-controller", connect=connect_with_events())

    async def events(self) -> list[objects_pb2.Event]:
        """The events about pods (the node's own NodeReady aside)."""
        listing = await self.objects.list(Kind.EVENT, "default")
        about_pods = [e for e in listing.items if e.involved_object.kind == "Pod"]
        return sorted(about_pods, key=lambda e: (e.reason, e.metadata.name))

    async def start(self, agent: ReportingAgent, *pods: objects_pb2.Pod) -> list[objects_pb2.Pod]:
        created = [await self.objects.create(p) for p in pods]
        await self.registry.register(
            factories.node_report(name="n1", address=agent.address), instance_id="i-1"
        )
        await eventually(lambda: agent.watching and bool(agent.pushes), "n1 was never synced")
        return created


def counts(events: list[objects_pb2.Event]) -> list[tuple[str, str, int]]:
    return [(e.involved_object.name, e.reason, e.count) for e in events]


# -- tests -------------------------------------------------------------------------------------


async def test_reported_events_become_merged_event_objects_about_the_pod() -> None:
    agent = await ReportingAgent().start()
    try:
        async with Plane() as plane:
            [pod] = await plane.start(agent, make_pod("web-1", "n1"))
            for i in range(3):  # one probe failure per report, as the agent sends them
                agent.report_events(pod, [agent_event(pod, at=T0 + 10 * i)])
            agent.report_events(
                pod,
                [
                    agent_event(
                        pod,
                        reason="Killing",
                        type="Normal",
                        message="Container main failed liveness probe, will be restarted",
                        at=T0 + 20,
                    )
                ],
            )

            async def merged() -> object:
                found = counts(await plane.events())
                return found == [("web-1", "Killing", 1), ("web-1", "Unhealthy", 3)] or found

            await eventually(merged, "describe pod would not show the merged events", within=10)
            killing, unhealthy = await plane.events()
    finally:
        await agent.stop()
    ref = unhealthy.involved_object
    assert (ref.kind, ref.namespace, ref.name, ref.uid, ref.field_path) == (
        "Pod",
        "default",
        "web-1",
        pod.metadata.uid,
        "spec.containers{main}",
    ), f"the event would not be found as this pod's: {ref}"
    assert (unhealthy.source.component, unhealthy.source.host) == ("pilothouse-agent", "n1")
    assert unhealthy.type == "Warning"
    assert unhealthy.message == "Liveness probe failed: HTTP probe failed with statuscode: 500"
    assert unhealthy.first_timestamp.seconds == T0, "the first failure's time was lost"
    assert unhealthy.last_timestamp.seconds == T0 + 20, "the last failure's time was lost"
    assert killing.type == "Normal" and killing.metadata.namespace == "default"


async def test_an_agent_cannot_write_events_about_pods_that_are_not_its_own() -> None:
    agent = await ReportingAgent().start()
    try:
        async with Plane() as plane:
            mine, theirs = await plane.start(agent, make_pod("web-1", "n1"), make_pod("db-1", "n2"))
            agent.report_events(theirs, [agent_event(theirs, message="not mine")])
            stale = objects_pb2.Pod()
            stale.CopyFrom(mine)
            stale.metadata.uid = "an-older-uid"
            agent.report_events(stale, [agent_event(stale, message="older pod")])
            agent.report_events(mine, [agent_event(theirs, message="about another pod")])
            agent.report_events(mine, [agent_event(mine, message="lying host", host="n2")])
            agent.report_events(mine, [agent_event(mine, message="fine")])

            async def written() -> object:
                return [e.message for e in await plane.events()] == ["fine"] or counts(
                    await plane.events()
                )

            await eventually(written, "only the agent's own pod's event should be written")
            await asyncio.sleep(0.2)
            assert [e.message for e in await plane.events()] == ["fine"]
    finally:
        await agent.stop()


async def test_a_removed_pods_last_events_are_kept() -> None:
    agent = await ReportingAgent().start()
    try:
        async with Plane() as plane:
            [pod] = await plane.start(agent, make_pod("web-1", "n1"))
            await plane.objects.delete(Kind.POD, "default", "web-1")
            stopping = agent_event(
                pod, reason="Killing", type="Normal", message="Stopping container main"
            )
            agent.report_events(pod, [stopping], removed=True)

            async def written() -> object:
                return [e.message for e in await plane.events()] == [stopping.message]

            await eventually(written, "the pod's Killing event on removal was lost")
    finally:
        await agent.stop()


async def test_one_event_name_is_written_at_most_once_per_second() -> None:
    objects = ObjectStore(MemoryStore())
    clock = ManualClock(start=float(T0))
    writer = EventWriter(
        EventRecorder(objects, component="node-controller", clock=clock), clock=clock
    )
    pod = make_pod("web-1", "n1")
    pod.metadata.uid = "uid-1"
    task = asyncio.create_task(writer.run())
    writes: list[int] = []

    async def stored() -> objects_pb2.Event:
        listing = await objects.list(Kind.EVENT, "default")
        [event] = listing.items
        if not writes or writes[-1] != int(event.metadata.resource_version):
            writes.append(int(event.metadata.resource_version))
        return event

    try:
        writer.add(agent_event(pod, at=T0))
        await settle()
        assert (await stored()).count == 1
        for _ in range(1, 10):  # a probe failing ten times within the same second
            writer.add(agent_event(pod, at=T0))
            await settle()
            await stored()
        await clock.advance(0.5)
        assert (await stored()).count == 1, "a repeat was written within a second of the last"
        await clock.advance(0.6)
        event = await stored()
        assert event.count == 10, "repeats that waited were lost instead of merged"
        assert len(writes) == 2, f"ten reports within a second cost {len(writes)} writes"
        assert event.metadata.name == reported_name(agent_event(pod))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_crash_looping_pod_on_a_fake_node_gets_its_events(tmp_path: Path) -> None:
    """The whole way: PodManager (fake runtime) -> WatchPods -> node sync -> Event objects."""
    node = pods_support.Node(tmp_path)
    server = grpc.aio.server()
    facts = NodeFacts(capacity={}, allocatable={}, info=objects_pb2.NodeSystemInfo())
    agent_pb2_grpc.add_NodeAgentServicer_to_server(
        NodeAgentServicer(name="n1", pods=node.manager, facts=facts), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await node.sync()
    crashing = make_pod("web-1", "n1")
    crashing.metadata.annotations.update(
        {"fake.pilothouse/run-for": "0.01", "fake.pilothouse/exit-code": "1"}
    )
    try:
        async with Plane() as plane:
            await plane.objects.create(crashing)
            report = factories.node_report(name="n1", address=f"127.0.0.1:{port}")
            await plane.registry.register(report, instance_id="i-1")

            async def looping() -> object:
                found = {e.reason: e for e in await plane.events()}
                backoff = found.get("BackOff")
                return (backoff is not None and backoff.count >= 3) or sorted(found)

            await eventually(looping, "describe pod would not show the crash loop", within=20)
            found = {e.reason: e for e in await plane.events()}
    finally:
        await server.stop(0)
        await node.close()
    assert {"Pulling", "Pulled", "Created", "Started", "BackOff"} <= set(found), sorted(found)
    backoff = found["BackOff"]
    assert backoff.message.startswith("Back-off restarting failed container main in pod web-1_")
    assert backoff.involved_object.field_path == "spec.containers{main}"
    assert (backoff.source.component, backoff.source.host) == ("pilothouse-agent", "n1")
    assert found["Started"].count >= 3, "every restart should count in one Started event"


async def test_a_node_writes_at_most_max_rate_events_per_second() -> None:
    objects = ObjectStore(MemoryStore())
    clock = ManualClock(start=float(T0))
    recorder = EventRecorder(objects, component="node-controller", clock=clock)
    writer = EventWriter(recorder, clock=clock, max_rate=2)
    pod = make_pod("web-1", "n1")
    pod.metadata.uid = "uid-1"
    for i in range(5):
        writer.add(agent_event(pod, message=f"Readiness probe failed: {i}"))
    task = asyncio.create_task(writer.run())

    async def written() -> int:
        return len((await objects.list(Kind.EVENT, "default")).items)

    try:
        await settle()
        seen = [await written()]
        for _ in range(3):
            await clock.advance(1.0)
            seen.append(await written())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [2, 4, 5, 5], f"events written per second with a budget of 2: {seen}"

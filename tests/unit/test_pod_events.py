"""Pod events from the agent (FakeRuntime, fake images, scripted probes on virtual time).

What a user would see in `describe pod`: a failing liveness probe gives Warning Unhealthy
("Liveness probe failed: …", merged with a count) and Normal Killing ("Container app failed
liveness probe, will be restarted"); a crash loop gives Warning BackOff ("Back-off restarting
failed container app in pod web_default(uid-1)"); pulls give Pulling/Pulled, pull errors
Failed/BackOff; a removed pod gives Killing ("Stopping container app"). Each event is about
the pod (kind, namespace, name, uid, fieldPath of the container), comes from
pilothouse-agent on the pod's node, and is reported once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from nodeagent.api.nodeinfo import NodeFacts
from nodeagent.api.servicer import NodeAgentServicer
from nodeagent.images.fake import FakeImageService
from nodeagent.pods.events import EventType, PodEvents, Reason, duration_text
from nodeagent.pods.manager import EventType as ChangeType
from nodeagent.pods.manager import PodEvent, PodManager
from nodeagent.probes import SUCCESS, Kind, failure
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.unit import pods_support, probes_support
from tests.unit.probes_support import LIVE, probe, status
from tests.unit.virtual_time import on_virtual_time


class Watch:
    """A watcher of the manager's reports, keeping every event it was handed."""

    def __init__(self, manager: PodManager) -> None:
        self.reports: list[PodEvent] = []
        self._task = asyncio.create_task(self._collect(manager.watch()))

    async def _collect(self, stream: AsyncIterator[PodEvent]) -> None:
        async for report in stream:
            self.reports.append(report)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def events(self) -> list[objects_pb2.Event]:
        return [e for r in self.reports for e in r.events]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def find(self, reason: str, contains: str = "") -> list[objects_pb2.Event]:
        return [e for e in self.events if e.reason == reason and contains in e.message]

    async def until(self, reason: str, contains: str = "", *, count: int = 1) -> None:
        for _ in range(1000):
            if sum(e.count for e in self.find(reason, contains)) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"describe pod would never show {reason} {contains!r} x{count}; events were:\n"
            + "\n".join(f"{e.type} {e.reason} x{e.count}: {e.message}" for e in self.events)
        )


def about_container(event: objects_pb2.Event, container: str = "app") -> None:
    ref = event.involved_object
    assert (ref.kind, ref.namespace, ref.name, ref.uid) == ("Pod", "default", "web", "uid-1"), (
        f"the event would not show under describe pod web: {ref}"
    )
    assert ref.field_path == f"spec.containers{{{container}}}", ref.field_path
    assert (event.source.component, event.source.host) == ("pilothouse-agent", "n1"), (
        f"the event's From column would be wrong: {event.source}"
    )
    assert event.count >= 1 and event.HasField("first_timestamp")
    assert event.last_timestamp.ToNanoseconds() >= event.first_timestamp.ToNanoseconds()


# -- PodEvents --------------------------------------------------------------------------------


def test_repeats_merge_the_list_is_bounded_and_drained_once() -> None:
    pod = pods_support.make_pod()
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    events = PodEvents(pod, capacity=3, clock=lambda: now[0])
    for _ in range(4):
        events.record(
            container="app",
            type=EventType.WARNING,
            reason=Reason.UNHEALTHY,
            message="Liveness probe failed: boom",
        )
        now[0] += timedelta(seconds=10)
    [merged] = events.drain()
    assert merged.count == 4, "repeated probe failures should be one event with a count"
    assert merged.last_timestamp.ToDatetime(UTC) - merged.first_timestamp.ToDatetime(UTC) == (
        timedelta(seconds=30)
    )
    assert merged.type == "Warning" and merged.reason == "Unhealthy"
    assert events.drain() == [], "an event was handed over twice"
    for i in range(5):
        events.record(type=EventType.NORMAL, reason=Reason.PULLED, message=f"m{i}")
    assert [e.message for e in events.drain()] == ["m2", "m3", "m4"], (
        "past its capacity the list should keep the newest events"
    )
    assert events.dropped == 2


def test_durations_read_like_the_kubelets() -> None:
    assert [duration_text(s) for s in (0.19, 1.234, 75.5)] == ["190ms", "1.23s", "1m15.5s"]


# -- probes -----------------------------------------------------------------------------------


@on_virtual_time
async def test_failing_liveness_probe_gives_unhealthy_and_killing(tmp_path: Path) -> None:
    async with probes_support.Node(tmp_path) as node:
        watch = Watch(node.manager)
        node.handler.script[Kind.LIVENESS] = lambda t: (
            failure("HTTP probe failed with statuscode: 500")
            if t.container_id.endswith("_0")
            else SUCCESS
        )
        pod = probes_support.make_pod(liveness=probe(LIVE, period=2, failure_threshold=3, grace=1))
        await node.manager.sync([pod])
        await node.until("restarted", lambda p: status(p).restart_count == 1)
        await watch.until("Started", "Started container app", count=2)
        await watch.stop()
    unhealthy = watch.find("Unhealthy")
    assert {(e.type, e.message) for e in unhealthy} == {
        ("Warning", "Liveness probe failed: HTTP probe failed with statuscode: 500")
    }
    assert sum(e.count for e in unhealthy) == 3, "each failed check should count once"
    about_container(unhealthy[0])
    [killing] = watch.find("Killing")
    assert killing.type == "Normal"
    assert killing.message == "Container app failed liveness probe, will be restarted"
    about_container(killing)
    reasons = watch.reasons()
    assert reasons.index("Unhealthy") < reasons.index("Killing"), reasons


@on_virtual_time
async def test_failing_readiness_probe_gives_unhealthy_without_killing(tmp_path: Path) -> None:
    async with probes_support.Node(tmp_path) as node:
        watch = Watch(node.manager)
        node.handler.script[Kind.READINESS] = lambda t: failure("HTTP probe failed: 503")
        await node.manager.sync([probes_support.make_pod(readiness=probe("ready", period=1))])
        await watch.until("Unhealthy", "Readiness probe failed: HTTP probe failed: 503", count=5)
        await watch.stop()
    assert not watch.find("Killing"), "a readiness failure must not restart the container"
    assert {e.message for e in watch.find("Unhealthy")} == {
        "Readiness probe failed: HTTP probe failed: 503"
    }


# -- restarts and pulls -----------------------------------------------------------------------


async def test_crash_loop_gives_backoff(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    try:
        await node.sync()
        watch = Watch(node.manager)
        await node.sync(pods_support.make_pod(knobs={"run-for": "0.01", "exit-code": "3"}))
        await watch.until("BackOff", "Back-off restarting failed container", count=3)
        await watch.stop()
    finally:
        await node.close()
    backoff = watch.find("BackOff")
    assert {e.message for e in backoff} == {
        "Back-off restarting failed container app in pod web_default(uid-1)"
    }
    assert all(e.type == "Warning" for e in backoff)
    about_container(backoff[0])
    assert sum(e.count for e in watch.find("Started", "Started container app")) >= 3
    assert sum(e.count for e in watch.find("Created", "Created container app")) >= 3


async def test_pulls_give_pulling_and_pulled(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    node.images = FakeImageService(present=("cached:1",))
    node.manager = node._manager()
    try:
        await node.sync()
        watch = Watch(node.manager)
        await node.sync(
            pods_support.make_pod(image="busybox:stable"),
            pods_support.make_pod("db", uid="uid-2", image="cached:1"),
        )
        await watch.until("Started", "Started container app")
        await watch.until("Pulled", '"cached:1" already present')
        await watch.stop()
    finally:
        await node.close()
    [pulling] = watch.find("Pulling")
    assert pulling.message == 'Pulling image "busybox:stable"'
    [pulled] = watch.find("Pulled", "busybox")
    assert pulled.message.startswith('Successfully pulled image "busybox:stable" in '), (
        pulled.message
    )
    about_container(pulled)
    [present] = watch.find("Pulled", "cached:1")
    assert present.message == 'Container image "cached:1" already present on machine'
    assert present.involved_object.name == "db"
    reasons = [e.reason for e in watch.events if e.involved_object.name == "web"]
    assert reasons == ["Pulling", "Pulled", "Created", "Started"], reasons


async def test_pull_error_gives_failed_and_backoff(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    node.images.pull_errors["busybox:nope"] = "manifest unknown"
    try:
        await node.sync()
        watch = Watch(node.manager)
        await node.sync(pods_support.make_pod(image="busybox:nope"))
        await watch.until("BackOff", 'Back-off pulling image "busybox:nope"', count=2)
        await watch.stop()
    finally:
        await node.close()
    messages = {(e.type, e.reason, e.message) for e in watch.events}
    assert (
        "Warning",
        "Failed",
        'Failed to pull image "busybox:nope": failed to pull image '
        '"docker.io/library/busybox:nope": manifest unknown',
    ) in messages, messages
    assert ("Warning", "Failed", "Error: ErrImagePull") in messages, messages
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in messages, messages
    assert ("Normal", "BackOff", 'Back-off pulling image "busybox:nope"') in messages
    assert not watch.find("Pulled"), "a failed pull was reported as pulled"


# -- delivery ---------------------------------------------------------------------------------


async def test_events_wait_for_a_watcher_and_go_out_once(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    try:
        await node.sync(pods_support.make_pod())
        await node.until("Running", pods_support.running)
        first = Watch(node.manager)
        await first.until("Started")
        second = Watch(node.manager)
        await asyncio.sleep(0.1)
        await node.sync()  # the pod is removed: its containers are stopped
        await first.until("Killing", "Stopping container app")
        await second.until("Killing", "Stopping container app")
        await first.stop()
        await second.stop()
    finally:
        await node.close()
    assert first.reasons() == ["Pulling", "Pulled", "Created", "Started", "Killing"], (
        "events recorded before anyone watched should reach the first watcher"
    )
    assert second.reasons() == ["Killing"], "events already handed over were sent again"
    removed = [r for r in first.reports if r.type is ChangeType.REMOVED]
    assert [e.reason for r in removed for e in r.events] == ["Killing"]


async def test_watch_pods_carries_the_events(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    server = grpc.aio.server()
    facts = NodeFacts(capacity={}, allocatable={}, info=objects_pb2.NodeSystemInfo())
    agent_pb2_grpc.add_NodeAgentServicer_to_server(
        NodeAgentServicer(name="n1", pods=node.manager, facts=facts), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await node.sync(pods_support.make_pod())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = agent_pb2_grpc.NodeAgentStub(channel)
            call = stub.WatchPods(agent_pb2.WatchPodsRequest())
            seen: list[objects_pb2.Event] = []
            async with asyncio.timeout(10):
                async for message in call:
                    seen.extend(message.events)
                    if any(e.reason == "Started" for e in message.events):
                        break
            call.cancel()
    finally:
        await server.stop(0)
        await node.close()
    started = next(e for e in seen if e.reason == "Started")
    assert started.message == "Started container app"
    about_container(started)

"""The agent's side of image housekeeping (fake runtime and images): Always pulls only a changed
digest and says so in the pod's events, ListImages names the pods using each image, and the
node's own events (image garbage collection) go out on WatchPods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from nodeagent.api.nodeinfo import NodeFacts
from nodeagent.api.servicer import NodeAgentServicer
from nodeagent.images import PullOutcome
from nodeagent.images.diskgc import GcReason
from nodeagent.images.fake import FakeImageService
from nodeagent.pods.events import EventType, NodeEvents
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, objects_pb2
from tests.unit import pods_support
from tests.unit.test_pod_events import Watch

LATEST = "registry.test/web:latest"  # no pull policy: Always, as Kubernetes defaults it
FACTS = NodeFacts(capacity={}, allocatable={}, info=objects_pb2.NodeSystemInfo())


async def test_always_with_an_unchanged_digest_does_not_pull_and_a_changed_one_does(
    tmp_path: Path,
) -> None:
    node = pods_support.Node(tmp_path)
    images = node.images = FakeImageService(present=(LATEST,))
    node.manager = node._manager()
    present = images.lookup(LATEST)
    assert present is not None
    try:
        await node.sync()
        watch = Watch(node.manager)
        await node.sync(pods_support.make_pod(image=LATEST))
        await watch.until("Started", "Started container app")
        assert [r.outcome for r in images.pull_records] == [PullOutcome.UNCHANGED], (
            "Always fetched an image whose digest the registry still names"
        )
        [pulled] = watch.find("Pulled")
        assert pulled.message == (
            f'Container image "{LATEST}" already present on machine and unchanged in the '
            f"registry ({present.digest})"
        )
        images.push(LATEST)
        await node.sync(
            pods_support.make_pod(image=LATEST),
            pods_support.make_pod("db", uid="uid-2", image=LATEST),
        )
        await watch.until("Started", "Started container app", count=2)
        await watch.stop()
    finally:
        await node.close()
    assert [r.outcome for r in images.pull_records] == [
        PullOutcome.UNCHANGED,
        PullOutcome.PULLED,
    ], "the changed digest was not pulled"
    [fresh] = [e for e in watch.find("Pulled") if e.involved_object.name == "db"]
    assert fresh.message.startswith(f'Successfully pulled image "{LATEST}" in '), fresh.message
    db = node.pod("db")
    assert db is not None
    assert db.status.container_statuses[0].image_id == images.lookup(LATEST).digest  # type: ignore[union-attr]


async def test_list_images_names_the_pods_using_each_image(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    node.images = FakeImageService(present=("registry.test/unused:1",), sizes={LATEST: 5000})
    node.manager = node._manager()
    servicer = NodeAgentServicer(name="n1", pods=node.manager, facts=FACTS, images=node.images)
    try:
        await node.sync(pods_support.make_pod(image=LATEST))
        await node.until("running", pods_support.running)
        listed = await servicer.ListImages(agent_pb2.ListImagesRequest(), None)  # type: ignore[arg-type]
    finally:
        await node.close()
    by_name = {tuple(i.names): i for i in listed.images}
    assert set(by_name) == {(LATEST,), ("registry.test/unused:1",)}
    used = by_name[(LATEST,)]
    assert list(used.pods) == ["default/web"], "the running pod is not listed with its image"
    assert used.size_bytes == 5000 and used.digest.startswith("sha256:")
    assert used.last_used.seconds > 0
    assert list(by_name[("registry.test/unused:1",)].pods) == []


async def test_node_events_go_out_on_watch_pods_beside_the_pods(tmp_path: Path) -> None:
    node = pods_support.Node(tmp_path)
    events = NodeEvents("n1")
    server = grpc.aio.server()
    agent_pb2_grpc.add_NodeAgentServicer_to_server(
        NodeAgentServicer(name="n1", pods=node.manager, facts=FACTS, node_events=events), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    reports: list[agent_pb2.PodStatusEvent] = []
    try:
        await node.sync(pods_support.make_pod())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = agent_pb2_grpc.NodeAgentStub(channel).WatchPods(agent_pb2.WatchPodsRequest())
            async with asyncio.timeout(10):
                async for message in call:
                    reports.append(message)
                    if message.type == agent_pb2.PodStatusEvent.UPDATED and not any(
                        r.type == agent_pb2.PodStatusEvent.NODE for r in reports
                    ):
                        events.record(
                            type=EventType.WARNING,
                            reason=GcReason.FREE_DISK_SPACE_FAILED,
                            message="Failed to garbage collect required amount of images.",
                        )
                    if message.type == agent_pb2.PodStatusEvent.NODE:
                        break
            call.cancel()
    finally:
        await server.stop(0)
        await node.close()
    assert reports[0].type == agent_pb2.PodStatusEvent.UPDATED
    [about_node] = [r for r in reports if r.type == agent_pb2.PodStatusEvent.NODE]
    assert not about_node.HasField("pod")
    [event] = about_node.events
    ref = event.involved_object
    assert (ref.kind, ref.name, ref.namespace) == ("Node", "n1", ""), ref
    assert (event.type, event.reason) == ("Warning", "FreeDiskSpaceFailed")
    assert (event.source.component, event.source.host) == ("pilothouse-agent", "n1")
    assert len(events) == 0, "a node event handed over still waits"

"""ObjectStore over the in-memory store: what a controller or the API sees of stored objects."""

from __future__ import annotations

import asyncio
import functools

import pytest

from controlplane.api import watch
from controlplane.objects import ApplyOutcome, ChangeType, Invalid, ObjectStore
from controlplane.store import AlreadyExists, Compacted, Conflict, NotFound
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories

# A Deployment as a person writes it: no namespace (the store defaults it), 2 replicas.
deployment = functools.partial(factories.deployment, namespace="", replicas=2)


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore(MemoryStore(), clock=lambda: 1_700_000_000.0)


async def test_create_sets_identity_and_get_reads_it_back(objects: ObjectStore) -> None:
    created = await objects.create(deployment())
    assert created.metadata.uid, "a created object has no uid"
    assert created.metadata.namespace == "default"
    assert created.metadata.generation == 1
    assert created.metadata.creation_timestamp.seconds == 1_700_000_000
    assert (created.api_version, created.kind) == ("apps/v1", "Deployment")
    got = await objects.get(Kind.DEPLOYMENT, "default", "web")
    assert got == created, "get returned something other than what create stored"


async def test_create_twice_is_already_exists(objects: ObjectStore) -> None:
    await objects.create(deployment())
    with pytest.raises(AlreadyExists, match='deployments "web"'):
        await objects.create(deployment())


async def test_get_missing_says_what_is_missing(objects: ObjectStore) -> None:
    with pytest.raises(NotFound, match='deployments "nope" in namespace "default" not found'):
        await objects.get(Kind.DEPLOYMENT, "default", "nope")


async def test_nameless_object_is_invalid(objects: ObjectStore) -> None:
    with pytest.raises(Invalid):
        await objects.create(objects_pb2.Deployment())


async def test_update_bumps_generation_only_on_spec_change(objects: ObjectStore) -> None:
    created = await objects.create(deployment())
    relabelled = objects_pb2.Deployment()
    relabelled.CopyFrom(created)
    relabelled.metadata.labels["tier"] = "front"
    after_labels = await objects.update(relabelled)
    assert after_labels.metadata.generation == 1, "a label change bumped the generation"
    assert after_labels.metadata.resource_version != created.metadata.resource_version

    scaled = objects_pb2.Deployment()
    scaled.CopyFrom(after_labels)
    scaled.spec.replicas = 5
    after_scale = await objects.update(scaled)
    assert after_scale.metadata.generation == 2, "a spec change did not bump the generation"


async def test_update_keeps_uid_timestamp_and_status(objects: ObjectStore) -> None:
    created = await objects.create(deployment())
    with_status = objects_pb2.Deployment()
    with_status.CopyFrom(created)
    with_status.status.replicas = 2
    stored = await objects.update_status(with_status)
    assert stored.status.replicas == 2
    assert stored.metadata.generation == 1, "a status write bumped the generation"

    tampered = objects_pb2.Deployment()
    tampered.CopyFrom(stored)
    tampered.metadata.uid = "forged"
    tampered.metadata.creation_timestamp.seconds = 1
    tampered.status.replicas = 99
    tampered.spec.replicas = 3
    after = await objects.update(tampered)
    assert after.metadata.uid == created.metadata.uid, "update let a caller change the uid"
    assert after.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert after.status.replicas == 2, "update wrote status"
    assert after.spec.replicas == 3


async def test_stale_update_is_a_conflict(objects: ObjectStore) -> None:
    created = await objects.create(deployment())
    first = objects_pb2.Deployment()
    first.CopyFrom(created)
    first.spec.replicas = 4
    await objects.update(first)
    stale = objects_pb2.Deployment()
    stale.CopyFrom(created)
    stale.spec.replicas = 7
    with pytest.raises(Conflict, match="has been modified"):
        await objects.update(stale)
    with pytest.raises(Conflict):
        await objects.update_status(stale)
    with pytest.raises(Conflict):
        await objects.delete(
            Kind.DEPLOYMENT, "default", "web", resource_version=created.metadata.resource_version
        )


async def test_noop_update_writes_nothing(objects: ObjectStore) -> None:
    created = await objects.create(deployment())
    again = await objects.update(created)
    assert again.metadata.resource_version == created.metadata.resource_version


async def test_apply_create_configure_unchanged(objects: ObjectStore) -> None:
    first = await objects.apply(deployment())
    assert first.outcome is ApplyOutcome.CREATED
    with_status = objects_pb2.Deployment()
    with_status.CopyFrom(first.object)
    with_status.status.ready_replicas = 2
    await objects.update_status(with_status)

    same = await objects.apply(deployment())
    assert same.outcome is ApplyOutcome.UNCHANGED, "re-applying the same manifest changed it"
    stored = await objects.get(Kind.DEPLOYMENT, "default", "web")
    assert same.object.metadata.resource_version == stored.metadata.resource_version

    changed = await objects.apply(deployment(image="busybox:1.36"))
    assert changed.outcome is ApplyOutcome.CONFIGURED
    assert changed.object.metadata.generation == 2
    assert changed.object.status.ready_replicas == 2, "apply dropped the status"

    dry = await objects.apply(deployment(image="busybox:1.37"), dry_run=True)
    assert dry.outcome is ApplyOutcome.CONFIGURED
    stored = await objects.get(Kind.DEPLOYMENT, "default", "web")
    assert stored.spec.template.spec.containers[0].image == "busybox:1.36", "dry run wrote"


async def test_apply_keeps_annotations_controllers_wrote(objects: ObjectStore) -> None:
    applied = deployment()
    applied.metadata.annotations["team"] = "web"
    created = (await objects.apply(applied)).object
    created.metadata.annotations["deployment.kubernetes.io/revision"] = "3"
    created.metadata.annotations["pilothouse.io/rollback-reason"] = "web-abc failed"
    await objects.update(created)

    again = await objects.apply(applied)
    assert again.outcome is ApplyOutcome.UNCHANGED, "re-applying dropped controller annotations"
    applied.metadata.annotations.pop("team")
    trimmed = (await objects.apply(applied)).object
    assert "team" not in trimmed.metadata.annotations, "an annotation the user removed stayed"
    assert trimmed.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert trimmed.metadata.annotations["pilothouse.io/rollback-reason"] == "web-abc failed"


async def test_list_filters_namespace_and_labels(objects: ObjectStore) -> None:
    await objects.create(deployment(name="a"))
    other = deployment(name="b")
    other.metadata.namespace = "prod"
    await objects.create(other)
    await objects.create(deployment(name="default2"))

    class AppIsA:
        def matches(self, labels) -> bool:
            return labels.get("app") == "a"

    everything = await objects.list(Kind.DEPLOYMENT)
    assert sorted(d.metadata.name for d in everything.items) == ["a", "b", "default2"]
    in_default = await objects.list(Kind.DEPLOYMENT, "default")
    assert sorted(d.metadata.name for d in in_default.items) == ["a", "default2"]
    selected = await objects.list(Kind.DEPLOYMENT, selector=AppIsA())
    assert [d.metadata.name for d in selected.items] == ["a"]


async def test_cluster_scoped_kinds_have_no_namespace(objects: ObjectStore) -> None:
    node = objects_pb2.Node()
    node.metadata.name = "n1"
    node.metadata.namespace = "ignored"
    created = await objects.create(node)
    assert created.metadata.namespace == ""
    assert (await objects.get(Kind.NODE, "", "n1")).metadata.uid == created.metadata.uid


async def test_events_have_no_status_but_store_fine(objects: ObjectStore) -> None:
    event = objects_pb2.Event(reason="Scheduled", message="assigned")
    event.metadata.generate_name = "web."
    created = await objects.create(event)
    assert created.metadata.name.startswith("web.")
    applied = await objects.apply(created)
    assert applied.outcome is ApplyOutcome.UNCHANGED


async def test_watch_sees_added_modified_deleted(objects: ObjectStore) -> None:
    start = (await objects.list(Kind.DEPLOYMENT)).revision
    created = await objects.create(deployment())
    changed = objects_pb2.Deployment()
    changed.CopyFrom(created)
    changed.spec.replicas = 9
    await objects.update(changed)
    await objects.delete(Kind.DEPLOYMENT, "default", "web")

    seen = []

    async def collect() -> None:
        async for change in objects.watch(Kind.DEPLOYMENT, "default", since=start):
            seen.append((change.type, change.object.spec.replicas, change.revision))
            if change.type is ChangeType.DELETED:
                return

    await asyncio.wait_for(collect(), 5)
    assert [s[0] for s in seen] == [ChangeType.ADDED, ChangeType.MODIFIED, ChangeType.DELETED]
    assert seen[1][1] == 9
    assert seen[0][2] < seen[1][2] < seen[2][2]


class CompactingObjectStore(ObjectStore):
    """Its first watch loses its history (as after a long etcd outage) once `lose` is set."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.lose = asyncio.Event()
        self._watches = 0

    async def watch(self, kind, namespace=None, *, since):
        self._watches += 1
        if self._watches == 1:
            await self.lose.wait()
            raise Compacted("history compacted", compact_revision=since + 1)
        async for change in super().watch(kind, namespace, since=since):
            yield change


async def test_watch_view_relists_after_compaction_and_sends_only_the_difference() -> None:
    objects = CompactingObjectStore(MemoryStore())
    for name, tier in (("a", "front"), ("b", "front"), ("c", "back")):
        d = deployment(name=name)
        d.metadata.labels["tier"] = tier
        await objects.create(d)
    selection = watch.Filter.parse(label_selector="tier=front", field_selector="")
    stream = watch.view(
        objects, kind=Kind.DEPLOYMENT, namespace=None, selection=selection, resource_version=""
    )

    async def next_change() -> tuple[ChangeType, str]:
        change = await asyncio.wait_for(anext(stream), 5)
        return change.type, change.object.metadata.name

    assert {await next_change(), await next_change()} == {
        (ChangeType.ADDED, "a"),
        (ChangeType.ADDED, "b"),
    }
    # While the watch is cut off: a goes, b changes, d arrives, c (not selected) changes.
    await objects.delete(Kind.DEPLOYMENT, "default", "a")
    b = await objects.get(Kind.DEPLOYMENT, "default", "b")
    b.spec.replicas = 7
    await objects.update(b)
    d = deployment(name="d")
    d.metadata.labels["tier"] = "front"
    await objects.create(d)
    c = await objects.get(Kind.DEPLOYMENT, "default", "c")
    c.spec.replicas = 3
    await objects.update(c)
    objects.lose.set()

    assert [await next_change() for _ in range(3)] == [
        (ChangeType.DELETED, "a"),
        (ChangeType.MODIFIED, "b"),
        (ChangeType.ADDED, "d"),
    ], "after a compaction the watch did not converge on the current state"
    # And it goes on watching from the relist.
    d = await objects.get(Kind.DEPLOYMENT, "default", "d")
    d.metadata.labels["tier"] = "back"
    await objects.update(d)
    assert await next_change() == (ChangeType.DELETED, "d"), "d left the selection unnoticed"
    await stream.aclose()


async def test_watch_view_from_a_compacted_version_is_compacted() -> None:
    store = MemoryStore()
    objects = ObjectStore(store)
    for name in ("a", "b", "c"):
        await objects.create(deployment(name=name))
    await store.compact(store.revision)
    stream = watch.view(
        objects,
        kind=Kind.DEPLOYMENT,
        namespace=None,
        selection=watch.Filter.parse(label_selector="", field_selector=""),
        resource_version="1",
    )
    with pytest.raises(Compacted):
        await anext(stream)

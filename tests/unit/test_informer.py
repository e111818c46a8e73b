"""Informers keep a faithful local copy of stored objects through watches, compaction and
store outages, and tell their handlers about every change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.cache.informer import NODE, Informer, Notice, pod_node
from controlplane.objects import ChangeType, ObjectStore
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store import Change, Unavailable
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from tests import factories


async def start(informer: Informer) -> asyncio.Task[None]:
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(informer.wait_synced(), 5)
    await settle()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cache_follows_creates_updates_and_deletes() -> None:
    objects = ObjectStore(MemoryStore())
    await objects.create(factories.pod(name="before"))
    informer = Informer(objects, Kind.POD)
    seen: list[tuple[ChangeType, str]] = []
    informer.add_handler(lambda n: seen.append((n.type, n.key)))
    task = await start(informer)
    try:
        assert informer.has_synced
        assert informer.get("default", "before") is not None, "a pod listed at start is missing"
        created = await objects.create(factories.pod(name="after", namespace="other"))
        created.metadata.labels["tier"] = "front"
        await objects.update(created)
        await objects.delete(Kind.POD, "default", "before")
        await settle()
        assert informer.get("default", "before") is None, "a deleted pod is still cached"
        cached = informer.get("other", "after")
        assert cached is not None and cached.metadata.labels["tier"] == "front"
        assert [p.metadata.name for p in informer.list(namespace="other")] == ["after"]
        # The namespace index follows updates and deletes as the cache does.
        assert informer.list(namespace="other")[0].metadata.labels["tier"] == "front"
        assert informer.list(namespace="default") == []
        assert seen == [
            (ChangeType.ADDED, "default/before"),
            (ChangeType.ADDED, "other/after"),
            (ChangeType.MODIFIED, "other/after"),
            (ChangeType.DELETED, "default/before"),
        ]
    finally:
        await stop(task)


async def test_owner_index_follows_adoption_release_deletion_and_relists() -> None:
    objects = ObjectStore(MemoryStore())
    await objects.create(factories.pod(name="a", owner="rs-1"))
    informer = Informer(objects, Kind.POD)
    task = await start(informer)
    try:
        b = await objects.create(factories.pod(name="b"))  # an orphan
        c = await objects.create(factories.pod(name="c", namespace="other", owner="rs-1"))
        await settle()
        assert sorted(p.metadata.name for p in informer.owned_by("rs-1")) == ["a", "c"]
        b.metadata.owner_references.add(kind="ReplicaSet", name="rs-2", uid="rs-2", controller=True)
        await objects.update(b)  # adopted
        del c.metadata.owner_references[:]
        await objects.update(c)  # released
        await objects.delete(Kind.POD, "default", "a")
        await settle()
        assert informer.owned_by("rs-1") == []
        assert [
            (p.metadata.name, len(p.metadata.owner_references)) for p in informer.owned_by("rs-2")
        ] == [("b", 1)]
        await informer._relist()  # a relist rebuilds the same index
        assert [p.metadata.name for p in informer.owned_by("rs-2")] == ["b"]
        assert informer.owned_by("rs-1") == []
        # An index added later files what is cached already, then follows changes.
        informer.add_index(NODE, pod_node)
        assert informer.indexed(NODE, "n1") == []
        b = informer.get("default", "b")
        moved = type(b)()
        moved.CopyFrom(b)
        moved.spec.node_name = "n1"
        await objects.update(moved)
        await settle()
        assert [p.metadata.name for p in informer.indexed(NODE, "n1")] == ["b"]
        assert [p.metadata.name for p in informer.owned_by("rs-2")] == ["b"]
        await objects.delete(Kind.POD, "default", "b")
        await settle()
        assert informer.indexed(NODE, "n1") == [] == informer.owned_by("rs-2")
    finally:
        await stop(task)


async def test_late_handler_gets_the_cached_objects_first() -> None:
    objects = ObjectStore(MemoryStore())
    await objects.create(factories.pod(name="a"))
    informer = Informer(objects, Kind.POD)
    task = await start(informer)
    try:
        seen: list[Notice] = []
        informer.add_handler(seen.append)
        assert [(n.type, n.key) for n in seen] == [(ChangeType.ADDED, "default/a")]
    finally:
        await stop(task)


async def test_compaction_while_away_is_answered_by_a_relist_that_reports_the_difference() -> None:
    store = MemoryStore()
    objects = ObjectStore(store)
    await objects.create(factories.pod(name="stays"))
    await objects.create(factories.pod(name="goes"))
    informer = Informer(objects, Kind.POD)
    seen: list[tuple[ChangeType, str]] = []
    informer.add_handler(lambda n: seen.append((n.type, n.key)))
    await stop(await start(informer))  # the informer falls behind ...
    seen.clear()
    await objects.delete(Kind.POD, "default", "goes")
    await objects.create(factories.pod(name="new"))
    await store.compact(store.revision)  # ... and its revision is compacted away
    task = asyncio.create_task(informer.run())
    try:
        await settle()
        assert sorted(p.metadata.name for p in informer.list()) == ["new", "stays"]
        assert set(seen) == {
            (ChangeType.ADDED, "default/new"),
            (ChangeType.DELETED, "default/goes"),
        }, f"handlers missed changes made while the watch was down: {seen}"
        await objects.create(factories.pod(name="after-relist"))
        await settle()
        assert informer.get("default", "after-relist") is not None, "watch did not resume"
    finally:
        await stop(task)


class FlakyStore(MemoryStore):
    """A MemoryStore whose next `outages` list or watch calls fail as if etcd were down."""

    def __init__(self) -> None:
        super().__init__()
        self.outages = 0

    async def list(self, prefix: str):  # type: ignore[override]
        if self.outages:
            self.outages -= 1
            raise Unavailable("etcd is down")
        return await super().list(prefix)

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        if self.outages:
            self.outages -= 1
            raise Unavailable("etcd is down")
        async for change in super().watch(prefix, since=since):
            yield change


async def test_outage_is_retried_with_backoff_and_nothing_is_lost() -> None:
    store = FlakyStore()
    objects = ObjectStore(store)
    clock = ManualClock()
    informer = Informer(objects, Kind.POD, clock=clock)
    store.outages = 3
    task = asyncio.create_task(informer.run())
    try:
        await settle()
        assert not informer.has_synced, "synced although the store was down"
        await objects.create(factories.pod(name="during-outage"))
        await clock.advance(10)
        assert informer.has_synced, "informer did not recover after the store came back"
        assert informer.get("default", "during-outage") is not None
    finally:
        await stop(task)

"""ObjectStore over the watch cache: compare-and-swap writes read no etcd entry first, and a
cached copy that lags the store never makes a write wrong (no lost update, no false
"unchanged", Conflict still raised when the caller's resourceVersion is old)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.objects import ApplyOutcome, ObjectStore
from controlplane.store import Conflict, Entry
from controlplane.store.memory import MemoryStore
from controlplane.store.watchcache import WatchCache
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.test_watchcache import CountingStore
from tests.unit.waiting import eventually


class ReadCountingStore(CountingStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        self.reads += 1
        return await MemoryStore.get(self, key)


@pytest.fixture
async def backend() -> AsyncIterator[ReadCountingStore]:
    store = ReadCountingStore()
    yield store
    await store.close()


@pytest.fixture
async def cache(backend: ReadCountingStore) -> AsyncIterator[WatchCache]:
    cache = WatchCache(backend, wait=0.5)
    feeding = asyncio.create_task(cache.run())
    await eventually(lambda: cache.synced, "the watch cache loads")
    yield cache
    feeding.cancel()
    await asyncio.gather(feeding, return_exceptions=True)


async def caught_up(cache: WatchCache, backend: ReadCountingStore) -> None:
    revision = await backend.current_revision()
    await eventually(lambda: cache.revision >= revision, "the cache catches up")


async def test_writes_read_the_cached_copy_not_the_store(
    cache: WatchCache, backend: ReadCountingStore
) -> None:
    objects = ObjectStore(cache)
    await objects.apply(factories.deployment(replicas=1))
    await caught_up(cache, backend)
    reads = backend.reads
    scaled = await objects.apply(factories.deployment(replicas=2))
    assert scaled.outcome is ApplyOutcome.CONFIGURED
    status = factories.pod(name="p")
    await objects.create(status)
    await caught_up(cache, backend)
    status.status.phase = "Running"
    await objects.update_status(status)
    assert backend.reads == reads, "a compare-and-swap write read the store first"


async def test_a_stale_copy_never_answers_unchanged(
    cache: WatchCache, backend: ReadCountingStore
) -> None:
    cached, direct = ObjectStore(cache), ObjectStore(backend)
    await cached.apply(factories.deployment(replicas=1))
    await caught_up(cache, backend)
    backend.flowing.clear()  # the cache stops hearing of writes
    await direct.apply(factories.deployment(replicas=5))
    again = await cached.apply(factories.deployment(replicas=1))
    assert again.outcome is ApplyOutcome.CONFIGURED
    assert (await direct.get(Kind.DEPLOYMENT, "default", "web")).spec.replicas == 1


async def test_a_stale_copy_loses_no_update_and_old_versions_conflict(
    cache: WatchCache, backend: ReadCountingStore
) -> None:
    cached, direct = ObjectStore(cache), ObjectStore(backend)
    pod = await cached.create(factories.pod(name="p"))
    await caught_up(cache, backend)
    backend.flowing.clear()
    other = await direct.get(Kind.POD, "default", "p")
    other.metadata.labels["by"] = "other"
    await direct.update(other)
    pod.status.phase = "Running"
    with pytest.raises(Conflict):
        await cached.update_status(pod)  # its resourceVersion is older than the store's
    pod.metadata.resource_version = ""
    await cached.update_status(pod)  # unpinned: retried from a fresh read
    stored = await direct.get(Kind.POD, "default", "p")
    assert (stored.status.phase, stored.metadata.labels["by"]) == ("Running", "other")

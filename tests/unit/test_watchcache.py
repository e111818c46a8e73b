"""The watch cache's own promises beyond the Store contract (tests/contract/test_store_cached.py):
consistent reads, one backend watch for many watchers, replay from its window after the
backend compacted, lagging watchers, and reads that fall back to the backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.store import Change, Compacted, NotFound, Unavailable
from controlplane.store.memory import MemoryStore
from controlplane.store.watchcache import WatchCache
from tests.unit.waiting import eventually


class CountingStore(MemoryStore):
    """A MemoryStore that counts its watches and revision questions, and can hold its
    watches' deliveries back."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0
        self.questions = 0
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.cut = False  # the next delivery breaks the watch instead (a lost connection)

    async def current_revision(self) -> int:
        self.questions += 1
        await asyncio.sleep(0)  # a round trip: readers arriving meanwhile share the next one
        return await super().current_revision()

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        self.watches += 1
        async for change in super().watch(prefix, since=since):
            await self.flowing.wait()
            if self.cut:
                self.cut = False
                raise Unavailable("the watch's connection was lost")
            yield change


@pytest.fixture
async def backend() -> AsyncIterator[CountingStore]:
    store = CountingStore()
    yield store
    await store.close()


@pytest.fixture
async def cache(backend: CountingStore) -> AsyncIterator[WatchCache]:
    cache = WatchCache(backend, window=50, queue_limit=20, wait=0.5)
    feeding = asyncio.create_task(cache.run())
    await eventually(lambda: cache.synced, "the watch cache loads")
    yield cache
    feeding.cancel()
    await asyncio.gather(feeding, return_exceptions=True)
    await cache.close()


async def take(watch: AsyncIterator[Change], count: int) -> list[Change]:
    async with asyncio.timeout(5):
        return [await anext(watch) for _ in range(count)]


async def test_a_get_right_after_a_write_sees_it(cache: WatchCache) -> None:
    for i in range(20):
        written = await cache.create(f"/pods/default/p{i:02}", b"v1")
        assert await cache.get(f"/pods/default/p{i:02}") == written
        updated = await cache.update(
            f"/pods/default/p{i:02}", b"v2", expected_revision=written.revision
        )
        assert (await cache.list("/pods/")).entries[-1] == updated
    assert (await cache.list("/pods/default/")).revision >= updated.revision


async def test_a_stale_get_is_served_without_asking_the_backend(
    cache: WatchCache, backend: CountingStore
) -> None:
    written = await cache.create("/pods/default/a", b"v1")
    await cache.get("/pods/default/a")
    asked = backend.questions
    assert await cache.get("/pods/default/a", fresh=False) == written
    assert backend.questions == asked


async def test_concurrent_reads_share_revision_questions(
    cache: WatchCache, backend: CountingStore
) -> None:
    await cache.create("/pods/default/a", b"v1")
    asked = backend.questions
    await asyncio.gather(*(cache.get("/pods/default/a") for _ in range(100)))
    assert backend.questions - asked <= 2, "every read asked etcd for its revision on its own"


async def test_a_hundred_watchers_cost_one_backend_watch(
    cache: WatchCache, backend: CountingStore
) -> None:
    since = cache.revision
    watches = [cache.watch("/pods/", since=since) for _ in range(100)]
    pending = [asyncio.create_task(take(w, 1)) for w in watches]
    await asyncio.sleep(0)
    written = await cache.create("/pods/default/a", b"v1")
    for task in pending:
        assert [c.revision for c in await task] == [written.revision]
    assert backend.watches == 1
    for watch in watches:
        await watch.aclose()


async def test_a_watch_from_before_a_compaction_replays_from_the_window(
    cache: WatchCache, backend: CountingStore
) -> None:
    since = cache.revision
    written = [await cache.create(f"/pods/default/p{i}", b"x") for i in range(5)]
    await eventually(lambda: cache.revision >= written[-1].revision, "the cache catches up")
    await backend.compact(written[-1].revision)  # etcd's auto-compaction, behind the cache
    with pytest.raises(Compacted):
        await anext(backend.watch("/pods/", since=since))
    watch = cache.watch("/pods/", since=since + 1)
    changes = await take(watch, 4)
    assert [c.revision for c in changes] == [w.revision for w in written[1:]]
    await watch.aclose()


async def test_a_watch_from_before_the_window_is_compacted(cache: WatchCache) -> None:
    since = cache.revision
    for i in range(60):  # the window keeps 50
        await cache.create(f"/pods/default/p{i}", b"x")
    await cache.get("/pods/default/p59")
    assert cache.floor > since
    with pytest.raises(Compacted):
        await anext(cache.watch("/pods/", since=since))
    replay = cache.watch("/pods/", since=cache.floor)
    assert (await anext(replay)).revision == cache.floor + 1
    await replay.aclose()


async def test_a_watcher_too_far_behind_must_list_again(cache: WatchCache) -> None:
    watch = cache.watch("/pods/", since=cache.revision)
    first = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)
    for i in range(30):  # nobody reads the watch; it may queue 20
        await cache.create(f"/pods/default/p{i}", b"x")
    await cache.get("/pods/default/p29")
    assert (await first).key == "/pods/default/p0"
    with pytest.raises(Compacted):
        async with asyncio.timeout(5):
            async for _ in watch:
                pass


async def test_reads_go_to_the_backend_when_the_cache_falls_behind(
    cache: WatchCache, backend: CountingStore
) -> None:
    backend.flowing.clear()  # the cache's watch is cut off
    written = await backend.create("/pods/default/a", b"v1")
    assert await cache.get("/pods/default/a") == written  # after `wait`, from the backend
    with pytest.raises(NotFound):
        await cache.get("/pods/default/a", fresh=False)  # the stale cache does not have it
    backend.flowing.set()
    await eventually(lambda: cache.revision >= written.revision, "the cache catches up")


async def test_the_cache_lists_again_when_the_store_compacted_past_it(
    cache: WatchCache, backend: CountingStore
) -> None:
    watch = cache.watch("/pods/", since=cache.revision)
    pending = asyncio.create_task(anext(watch))
    backend.flowing.clear()  # the cache falls behind …
    written = [await backend.create(f"/pods/default/p{i}", b"x") for i in range(3)]
    await backend.compact(written[-1].revision)  # … and etcd compacts past it
    backend.cut = True
    backend.flowing.set()  # its watch breaks; watching again from its revision is Compacted
    with pytest.raises(Compacted):
        async with asyncio.timeout(5):
            await pending  # its watcher may have missed changes: it must list again
    await eventually(lambda: cache.revision == written[-1].revision, "the cache lists again")
    assert [e.key for e in (await cache.list("/pods/")).entries] == [w.key for w in written]
    assert backend.watches == 3  # the first, the refused one, the one after the list

"""The Store contract: one suite that every Store implementation must pass (memory and etcd),
plus the etcd-only promises about outages (Unavailable, reconnect, watch resume).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from controlplane.store import (
    AlreadyExists,
    Change,
    Compacted,
    Conflict,
    EventType,
    NotFound,
    Store,
    StoreError,
    Unavailable,
)
from controlplane.store.etcd import EtcdStore
from tests.fixtures.etcd import EtcdServer


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


async def take(changes: AsyncIterator[Change], count: int, within: float = 15.0) -> list[Change]:
    """The next `count` changes of a watch (fails, rather than hangs, if they never come)."""
    seen: list[Change] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            async for change in changes:
                seen.append(change)
                if len(seen) == count:
                    break
    assert len(seen) == count, f"watch delivered only {len(seen)} of {count} changes: {seen}"
    return seen


async def nothing_more(changes: AsyncIterator[Change], wait: float = 0.3) -> list[Change]:
    """Changes delivered within `wait` seconds; used to prove there are no duplicates."""
    extra: list[Change] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            async for change in changes:
                extra.append(change)
    return extra


# -- single keys ------------------------------------------------------------------------


async def test_get_of_a_missing_key_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.get("/deployments/default/web")


async def test_create_then_get_returns_the_value_at_its_revision(store: Store) -> None:
    created = await store.create("/deployments/default/web", b"v1")
    read = await store.get("/deployments/default/web")
    assert read == created, "a created object must read back exactly as created"
    assert read.value == b"v1"
    assert read.revision == read.create_revision > 0


async def test_create_of_an_existing_key_fails_and_keeps_the_value(store: Store) -> None:
    await store.create("/pods/default/a", b"first")
    with pytest.raises(AlreadyExists):
        await store.create("/pods/default/a", b"second")
    assert (await store.get("/pods/default/a")).value == b"first", "create overwrote an object"


async def test_update_at_the_current_revision_succeeds(store: Store) -> None:
    created = await store.create("/pods/default/a", b"v1")
    updated = await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
    assert updated.revision > created.revision, "an update must move the resourceVersion"
    assert updated.create_revision == created.create_revision
    assert await store.get("/pods/default/a") == updated


async def test_update_at_a_stale_revision_is_a_conflict(store: Store) -> None:
    created = await store.create("/pods/default/a", b"v1")
    await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
    with pytest.raises(Conflict):
        await store.update("/pods/default/a", b"lost", expected_revision=created.revision)
    assert (await store.get("/pods/default/a")).value == b"v2", (
        "a stale write overwrote a newer one"
    )


async def test_update_of_a_missing_key_is_not_found(store: Store) -> None:
    for expected in (0, 1):
        with pytest.raises(NotFound):
            await store.update("/pods/default/ghost", b"v", expected_revision=expected)
    with pytest.raises(NotFound):
        await store.get("/pods/default/ghost")


async def test_delete_compares_the_revision(store: Store) -> None:
    created = await store.create("/pods/default/a", b"v1")
    updated = await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
    with pytest.raises(Conflict):
        await store.delete("/pods/default/a", expected_revision=created.revision)
    assert (await store.get("/pods/default/a")).value == b"v2", "a stale delete removed the object"
    deleted = await store.delete("/pods/default/a", expected_revision=updated.revision)
    assert deleted == updated, "delete must return the entry it removed"
    with pytest.raises(NotFound):
        await store.get("/pods/default/a")


async def test_unconditional_delete(store: Store) -> None:
    await store.create("/pods/default/a", b"v1")
    deleted = await store.delete("/pods/default/a")
    assert deleted.value == b"v1"
    with pytest.raises(NotFound):
        await store.delete("/pods/default/a")


async def test_a_key_can_be_created_again_after_delete(store: Store) -> None:
    first = await store.create("/pods/default/a", b"v1")
    await store.delete("/pods/default/a")
    again = await store.create("/pods/default/a", b"v2")
    assert again.create_revision > first.create_revision


# -- lists ------------------------------------------------------------------------------


async def test_list_returns_only_the_prefix_in_key_order_with_the_revision(store: Store) -> None:
    await store.create("/pods/default/b", b"b")
    await store.create("/pods/default/a", b"a")
    await store.create("/pods/defaultx/c", b"not mine")
    last = await store.create("/nodes/n1", b"node")
    listing = await store.list("/pods/default/")
    assert [e.key for e in listing.entries] == ["/pods/default/a", "/pods/default/b"]
    assert [e.value for e in listing.entries] == [b"a", b"b"]
    assert listing.revision >= last.revision, "a list must be read at or after the last write"
    empty = await store.list("/deployments/")
    assert empty.entries == []
    assert empty.revision >= last.revision


async def test_a_long_list_is_complete_and_read_at_one_revision(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controlplane.store.etcd._PAGE_SIZE", 2)  # etcd reads it in pages
    written = [await store.create(f"/pods/default/p{i}", b"x") for i in range(5)]
    listing = await store.list("/pods/")
    assert listing.entries == written, "a list read in pages lost or repeated objects"
    assert listing.revision == written[-1].revision


async def test_list_then_watch_misses_nothing(store: Store) -> None:
    await store.create("/pods/default/a", b"a")
    listing = await store.list("/pods/")
    writes = [
        await store.create("/pods/default/b", b"b"),
        await store.update("/pods/default/a", b"a2", expected_revision=listing.entries[0].revision),
    ]
    watch = store.watch("/pods/", since=listing.revision)
    try:
        changes = await take(watch, 2)
    finally:
        await watch.aclose()
    assert [(c.key, c.revision) for c in changes] == [(w.key, w.revision) for w in writes]


# -- watches ----------------------------------------------------------------------------


async def test_watch_sees_put_update_and_delete_live(store: Store) -> None:
    start = (await store.list("/")).revision
    watch = store.watch("/pods/", since=start)
    seen = asyncio.create_task(take(watch, 3))
    await asyncio.sleep(0.1)  # the watch is running before the writes happen
    created = await store.create("/pods/default/a", b"v1")
    updated = await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
    await store.create("/nodes/n1", b"outside the prefix")
    deleted = await store.delete("/pods/default/a")
    try:
        changes = await seen
    finally:
        await watch.aclose()
    assert [(c.type, c.key, c.value, c.created) for c in changes] == [
        (EventType.PUT, "/pods/default/a", b"v1", True),
        (EventType.PUT, "/pods/default/a", b"v2", False),
        (EventType.DELETE, "/pods/default/a", b"v2", False),
    ]
    assert changes[0].revision == created.revision
    assert changes[1].revision == updated.revision
    assert changes[2].revision > updated.revision
    assert deleted == updated, "delete must return the entry it removed"


async def test_watch_from_an_old_revision_replays_history(store: Store) -> None:
    start = (await store.list("/")).revision
    revisions = []
    for i in range(5):
        revisions.append((await store.create(f"/pods/default/p{i}", b"x")).revision)
    watch = store.watch("/pods/", since=revisions[1])
    try:
        changes = await take(watch, 3)
        assert await nothing_more(watch) == []
    finally:
        await watch.aclose()
    assert [c.revision for c in changes] == revisions[2:], "replay must start after `since`"
    assert start < revisions[0]


async def test_a_slow_watcher_does_not_block_writers(store: Store) -> None:
    start = (await store.list("/")).revision
    watch = store.watch("/pods/", since=start)
    await store.create("/pods/default/p000", b"x" * 1024)
    async with asyncio.timeout(15):
        first = await anext(watch)  # the watch is open, and nobody reads it for a while
    async with asyncio.timeout(30):
        for i in range(1, 200):
            await store.create(f"/pods/default/p{i:03}", b"x" * 1024)
    try:
        rest = await take(watch, 199)
    finally:
        await watch.aclose()
    assert [c.key for c in [first, *rest]] == [f"/pods/default/p{i:03}" for i in range(200)]


async def test_watch_from_a_compacted_revision_raises_compacted(store: Store) -> None:
    start = (await store.list("/")).revision
    created = await store.create("/pods/default/a", b"v1")
    last = await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
    await store.compact(last.revision)
    watch = store.watch("/pods/", since=start)
    with pytest.raises(Compacted):
        await anext(watch)
    await watch.aclose()
    # The answer to Compacted: list again and watch from the listing's revision.
    listing = await store.list("/pods/")
    assert [e.value for e in listing.entries] == [b"v2"]
    watch = store.watch("/pods/", since=listing.revision)
    try:
        pending = asyncio.create_task(take(watch, 1))
        await asyncio.sleep(0.1)
        await store.delete("/pods/default/a")
        assert [c.type for c in await pending] == [EventType.DELETE]
    finally:
        await watch.aclose()


async def test_compacting_twice_is_harmless(store: Store) -> None:
    created = await store.create("/pods/default/a", b"v1")
    await store.compact(created.revision)
    await store.compact(created.revision)
    assert (await store.get("/pods/default/a")).value == b"v1"
    with pytest.raises(StoreError, match="revision"):
        await store.compact(10**9)  # a revision the store has not reached


# -- etcd outages -----------------------------------------------------------------------


async def test_etcd_outage_is_unavailable_and_the_same_store_works_after(
    etcd_server: EtcdServer,
) -> None:
    store = etcd_server.store(root="/outage")
    try:
        created = await store.create("/pods/default/a", b"v1")
        etcd_server.stop()
        with pytest.raises(Unavailable) as raised:
            await store.get("/pods/default/a")
        message = str(raised.value)
        assert etcd_server.endpoint in message and "start etcd" in message, (
            f"the error a user sees must name the endpoint and what to do: {message}"
        )
        with pytest.raises(Unavailable):
            await store.update("/pods/default/a", b"v2", expected_revision=created.revision)
        etcd_server.start()
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(Unavailable):
                    updated = await store.update(
                        "/pods/default/a", b"v2", expected_revision=created.revision
                    )
                    break
                await asyncio.sleep(0.1)
        assert (await store.get("/pods/default/a")) == updated
    finally:
        await store.close()


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_etcd_watch_resumes_across_an_outage(etcd_server: EtcdServer, outage: str) -> None:
    store = etcd_server.store(root="/resume")
    writer = etcd_server.store(root="/resume")
    watch = store.watch("/pods/", since=0)
    try:
        before = [await writer.create(f"/pods/default/before{i}", b"x") for i in range(3)]
        seen = await take(watch, 1)  # the watch has delivered one; two are still in flight
        getattr(etcd_server, outage)()
        pending = asyncio.create_task(take(watch, 4))
        await asyncio.sleep(0.5)  # the watch notices the outage and starts retrying
        etcd_server.start()
        after = []
        async with asyncio.timeout(10):
            while len(after) < 2:
                with contextlib.suppress(Unavailable):
                    after.append(await writer.create(f"/pods/default/after{len(after)}", b"y"))
        seen += await pending
        assert await nothing_more(watch) == [], "the resumed watch delivered a change twice"
    finally:
        await watch.aclose()
        await store.close()
        await writer.close()
    assert [c.revision for c in seen] == [e.revision for e in before + after], (
        "a watch across an etcd outage must deliver every change exactly once, in order"
    )


async def test_etcd_watch_whose_resume_point_was_compacted_raises_compacted(
    etcd_server: EtcdServer,
) -> None:
    store = etcd_server.store(root="/compacted")
    watch = store.watch("/pods/", since=0)
    try:
        first = await store.create("/pods/default/a", b"v1")
        await take(watch, 1)  # the watch is now suspended until we ask for more
        etcd_server.stop()
        etcd_server.start()
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(Unavailable):
                    second = await store.update(
                        "/pods/default/a", b"v2", expected_revision=first.revision
                    )
                    break
                await asyncio.sleep(0.05)
        await store.update("/pods/default/a", b"v3", expected_revision=second.revision)
        await store.compact(second.revision + 1)
        with pytest.raises(Compacted):
            async with asyncio.timeout(15):
                await anext(watch)
    finally:
        await watch.aclose()
        await store.close()


async def test_etcd_store_tries_the_next_endpoint(etcd_server: EtcdServer) -> None:
    from controlplane.store.embedded import free_port

    dead = f"https://127.0.0.1:{free_port()}"
    store = EtcdStore(
        [dead, etcd_server.endpoint], root="/endpoints", credentials=etcd_server.credentials()
    )
    try:
        created = await store.create("/pods/default/a", b"v1")
        assert (await store.get("/pods/default/a")) == created
    finally:
        await store.close()


async def test_close_ends_open_watches(store: Store) -> None:
    start = (await store.list("/")).revision
    watch = store.watch("/pods/", since=start)
    await store.create("/pods/default/a", b"v1")
    async with asyncio.timeout(15):
        await anext(watch)
    pending = asyncio.create_task(take(watch, 1, within=10))
    await asyncio.sleep(0.1)
    await store.close()
    async with asyncio.timeout(5):
        with pytest.raises(AssertionError, match="only 0 of 1"):
            await pending  # the watch ended quietly, without waiting for the timeout
    with pytest.raises(Unavailable):
        await store.get("/pods/default/a")

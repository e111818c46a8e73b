"""The Store contract, part two: leases and fenced writes, on memory and on etcd alike.

What leadership relies on (`controlplane.leader`): a key created with a lease goes when the
lease ends (expiry or revoke), a renewed lease does not end, and a write through a fenced view
succeeds only while the fence key exists with the fence's create revision; a refused write
changes nothing and uses no revision.
"""

from __future__ import annotations

import asyncio

import pytest

from controlplane.store import (
    AlreadyExists,
    Conflict,
    EventType,
    Fence,
    Fenced,
    NotFound,
    Store,
)
from tests.contract.test_store import take

LEADER = "/leader/controlplane/a"


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


async def _term(store: Store) -> tuple[Store, Fence]:
    held = await store.create(LEADER, b"me")
    fence = Fence(key=LEADER, revision=held.create_revision)
    return store.fenced(fence), fence


# -- leases ------------------------------------------------------------------------------


async def test_a_revoked_lease_deletes_its_keys_and_watchers_see_it(store: Store) -> None:
    lease = await store.grant_lease(5)
    assert lease.ttl >= 5
    created = await store.create("/leader/x", b"v", lease=lease.id)
    unleased = await store.create("/leader/y", b"v")
    watch = store.watch("/leader/", since=unleased.revision)
    try:
        await store.revoke_lease(lease.id)
        (change,) = await take(watch, 1)
    finally:
        await watch.aclose()
    assert (change.type, change.key) == (EventType.DELETE, created.key)
    with pytest.raises(NotFound):
        await store.get("/leader/x")
    assert (await store.get("/leader/y")).value == b"v", "revoke deleted a key without its lease"
    await store.revoke_lease(lease.id)  # revoking again is harmless
    with pytest.raises(NotFound):
        await store.keep_alive(lease.id)


async def test_a_lease_expires_unless_kept_alive(store: Store) -> None:
    kept = await store.grant_lease(2)
    left = await store.grant_lease(2)
    await store.create("/leader/kept", b"v", lease=kept.id)
    await store.create("/leader/left", b"v", lease=left.id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        assert await store.keep_alive(kept.id) >= 1
        try:
            await store.get("/leader/left")
        except NotFound:
            break
        await asyncio.sleep(0.3)
    else:
        pytest.fail("a lease nobody renewed did not expire within 15 s")
    assert (await store.get("/leader/kept")).value == b"v", "a renewed lease expired"
    with pytest.raises(NotFound):
        await store.keep_alive(left.id)
    with pytest.raises(NotFound):
        await store.create("/leader/again", b"v", lease=left.id)
    await store.revoke_lease(kept.id)


# -- fenced writes -----------------------------------------------------------------------


async def test_fenced_writes_succeed_while_the_term_holds(store: Store) -> None:
    fenced, _ = await _term(store)
    created = await fenced.create("/pods/default/a", b"v1")
    updated = await fenced.update("/pods/default/a", b"v2", expected_revision=created.revision)
    assert (await fenced.get("/pods/default/a")) == updated
    assert [e.key for e in (await fenced.list("/pods/")).entries] == ["/pods/default/a"]
    await fenced.delete("/pods/default/a", expected_revision=updated.revision)
    with pytest.raises(NotFound):
        await store.get("/pods/default/a")


async def test_fenced_writes_keep_their_usual_errors(store: Store) -> None:
    fenced, _ = await _term(store)
    created = await fenced.create("/pods/default/a", b"v1")
    with pytest.raises(AlreadyExists):
        await fenced.create("/pods/default/a", b"again")
    await fenced.update("/pods/default/a", b"v2", expected_revision=created.revision)
    with pytest.raises(Conflict):
        await fenced.update("/pods/default/a", b"v3", expected_revision=created.revision)
    with pytest.raises(Conflict):
        await fenced.delete("/pods/default/a", expected_revision=created.revision)
    with pytest.raises(NotFound):
        await fenced.update("/pods/default/ghost", b"v", expected_revision=1)
    with pytest.raises(NotFound):
        await fenced.delete("/pods/default/ghost")


async def test_a_write_after_the_term_ended_is_fenced_and_changes_nothing(store: Store) -> None:
    fenced, fence = await _term(store)
    existing = await fenced.create("/pods/default/a", b"v1")
    await store.delete(LEADER)
    before = (await store.list("/")).revision
    with pytest.raises(Fenced):
        await fenced.create("/pods/default/b", b"stale")
    with pytest.raises(Fenced):
        await fenced.update("/pods/default/a", b"stale", expected_revision=existing.revision)
    with pytest.raises(Fenced):
        await fenced.delete("/pods/default/a", expected_revision=existing.revision)
    with pytest.raises(Fenced):
        await fenced.delete("/pods/default/a")
    after = await store.list("/")
    assert after.revision == before, "a refused fenced write used a revision"
    assert [(e.key, e.value) for e in after.entries] == [("/pods/default/a", b"v1")]
    # Another term on the same key (a new campaign) does not revive the old fence.
    await store.create(LEADER, b"someone else")
    with pytest.raises(Fenced):
        await fenced.update("/pods/default/a", b"stale", expected_revision=existing.revision)
    assert (await store.get("/pods/default/a")).value == b"v1"
    assert fence.revision < (await store.get(LEADER)).create_revision


async def test_a_fenced_view_ends_with_its_lease(store: Store) -> None:
    lease = await store.grant_lease(5)
    held = await store.create(LEADER, b"me", lease=lease.id)
    fenced = store.fenced(Fence(key=LEADER, revision=held.create_revision))
    await fenced.create("/pods/default/a", b"v1")
    await store.revoke_lease(lease.id)
    with pytest.raises(Fenced):
        await fenced.create("/pods/default/b", b"v1")
    await fenced.close()  # closing a view leaves the store open
    assert (await store.get("/pods/default/a")).value == b"v1"

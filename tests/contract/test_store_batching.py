"""Concurrent writes to etcd share transactions (`controlplane.store.etcdbatch`) and each still
gets its own answer: Conflict, NotFound, AlreadyExists and Fenced for the writes whose own
compare fails, success for the others; two writes of one key never commit out of order.
Memory runs the same suite, so both backends answer alike."""

from __future__ import annotations

import asyncio

import pytest
from aetcd import rpc

from controlplane.store import AlreadyExists, Conflict, Fence, Fenced, NotFound, Store
from controlplane.store.etcd import EtcdStore
from tests.fixtures.etcd import EtcdServer


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


async def test_concurrent_writes_share_few_transactions(
    etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    batch = EtcdStore.batch

    async def counted(self: EtcdStore, request: rpc.TxnRequest) -> rpc.TxnResponse:
        sent.append(len(request.success))
        return await batch(self, request)

    monkeypatch.setattr(EtcdStore, "batch", counted)
    store = etcd_server.store(root="/batching")
    try:
        created = await asyncio.gather(
            *(store.create(f"/pods/default/p{i}", b"v1") for i in range(64))
        )
        updated = await asyncio.gather(
            *(store.update(e.key, b"v2", expected_revision=e.revision) for e in reversed(created))
        )
        assert sum(sent) == 128 and len(sent) < 64, sent
        for entry in updated:
            assert await store.get(entry.key) == entry
            assert entry.create_revision in {e.create_revision for e in created}
    finally:
        await store.close()


async def test_each_write_of_a_batch_gets_its_own_answer(store: Store) -> None:
    a = await store.create("/pods/default/a", b"a1")
    b = await store.create("/pods/default/b", b"b1")
    await store.create("/pods/default/d", b"d1")
    a2 = await store.update(a.key, b"a2", expected_revision=a.revision)
    answers = await asyncio.gather(
        store.update(a.key, b"stale", expected_revision=a.revision),
        store.update(b.key, b"b2", expected_revision=b.revision),
        store.create("/pods/default/c", b"c1"),
        store.create("/pods/default/d", b"again"),
        store.update("/pods/default/e", b"e1", expected_revision=a.revision),
        return_exceptions=True,
    )
    assert [type(x) for x in answers[:1] + answers[3:]] == [Conflict, AlreadyExists, NotFound]
    assert (await store.get(a.key)) == a2
    assert (await store.get(b.key)).value == b"b2" == answers[1].value  # type: ignore[union-attr]
    assert (await store.get("/pods/default/c")) == answers[2]
    assert (await store.get("/pods/default/d")).value == b"d1"


async def test_racing_writes_of_one_key_one_wins(store: Store) -> None:
    a = await store.create("/pods/default/a", b"v0")
    answers = await asyncio.gather(
        *(store.update(a.key, f"v{i}".encode(), expected_revision=a.revision) for i in range(20)),
        return_exceptions=True,
    )
    won = [x for x in answers if not isinstance(x, Exception)]
    assert len(won) == 1 and all(isinstance(x, Conflict) for x in answers if x not in won)
    assert await store.get(a.key) == won[0]


async def test_fenced_and_unfenced_writes_together(store: Store) -> None:
    held = await store.create("/leader/a", b"me")
    old = Fence(key="/leader/a", revision=held.create_revision - 1)  # a term that ended
    current = Fence(key="/leader/a", revision=held.create_revision)
    answers = await asyncio.gather(
        store.fenced(old).create("/pods/default/x", b"deposed"),
        store.fenced(current).create("/pods/default/y", b"leader"),
        store.create("/pods/default/z", b"anyone"),
        return_exceptions=True,
    )
    assert isinstance(answers[0], Fenced)
    with pytest.raises(NotFound):
        await store.get("/pods/default/x")
    assert [(await store.get(k)).value for k in ("/pods/default/y", "/pods/default/z")] == [
        b"leader",
        b"anyone",
    ]


async def test_a_burst_of_updates_stays_within_etcds_transaction_limit(
    etcd_server: EtcdServer,
) -> None:
    """Hundreds of concurrent updates (agents reporting status at scale) all commit: no batch
    exceeds etcd's --max-txn-ops (default 128), which counts compares, not writes."""
    store = etcd_server.store(root="/burst")
    try:
        fenced = store.fenced(
            Fence(
                key="/leader/x", revision=(await store.create("/leader/x", b"me")).create_revision
            )
        )
        created = await asyncio.gather(
            *(store.create(f"/pods/default/p{i}", b"v1") for i in range(300))
        )
        updated = await asyncio.gather(
            *(fenced.update(e.key, b"v2", expected_revision=e.revision) for e in created)
        )
        assert [(await store.get(e.key)).value for e in updated] == [b"v2"] * 300
    finally:
        await store.close()

"""Defragmentation on a real etcd: after churn and compaction the database file keeps its
free pages until the defragmenter, whose policy picks the member, gives them back."""

from __future__ import annotations

from controlplane.store.defrag import Defragmenter, wanted
from controlplane.store.etcdcluster import EtcdMember
from tests.fixtures.etcd import EtcdServer


async def test_churn_then_defragmentation_shrinks_the_database(etcd_server: EtcdServer) -> None:
    store = etcd_server.store(root="/churn")
    try:
        value = b"x" * 16384
        for round_ in range(3):  # pods come and go
            for i in range(300):
                await store.create(f"/pods/default/p{round_}-{i}", value)
            for i in range(300):
                await store.delete(f"/pods/default/p{round_}-{i}")
        await store.compact(await store.current_revision())
        (churned,) = await store.cluster_members()
        assert churned.db_size - churned.db_size_in_use > 4 * 1024**2, churned

        cautious = Defragmenter(store, min_free=1024**3)
        assert await cautious.once() == [], "defragmented below its threshold"
        done = await Defragmenter(store, min_free=1024**2, ratio=0.3).once()
        (after,) = await store.cluster_members()
        assert done == [churned.name]
        assert after.db_size < churned.db_size / 2, (churned, after)
        assert await store.current_revision() >= 1  # etcd serves again
    finally:
        await store.close()


def test_the_policy_wants_enough_free_space_on_a_healthy_member() -> None:
    def member(size: int, in_use: int, healthy: bool = True) -> EtcdMember:
        return EtcdMember(
            "m", 1, ("https://m",), healthy, False, db_size=size, db_size_in_use=in_use
        )

    mib = 1024**2
    assert wanted(member(400 * mib, 100 * mib), min_free=100 * mib, ratio=0.5)
    assert not wanted(member(400 * mib, 100 * mib, healthy=False), min_free=100 * mib, ratio=0.5)
    assert not wanted(member(400 * mib, 350 * mib), min_free=10 * mib, ratio=0.5)  # ratio
    assert not wanted(member(40 * mib, 1 * mib), min_free=100 * mib, ratio=0.5)  # too little

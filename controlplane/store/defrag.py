"""Defragmentation: give etcd's free pages back, so its database file does not only grow.

Why: etcd's auto-compaction (`etcdmember`: every 5 min) drops old revisions, but the pages
they held stay in the database file as free pages; under churn (pods created and deleted,
status written) the file grows towards the backend quota, and at the quota etcd refuses every
write. Defragmentation rewrites the file without them. A member being defragmented answers
nothing else meanwhile, so:

Invariants:
- Only the control-plane leader defragments (`needs_leadership`), so members of an HA
  cluster never defragment at the same time; it does one member at a time, the raft leader
  last, and only members that are healthy, so a quorum keeps serving throughout.
- A member is defragmented only when its free space is both at least `min_free` bytes and at
  least `ratio` of its file (etcd-defrag's rule), checked every `interval` seconds; store
  errors are logged and tried again at the next check.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from controlplane.store import StoreError
from controlplane.store.etcdcluster import EtcdMember

log = structlog.get_logger(__name__)

INTERVAL = 300.0
MIN_FREE = 100 * 1024**2
RATIO = 0.5


class Members(Protocol):
    """What the policy needs of the etcd store (EtcdStore)."""

    async def cluster_members(self) -> list[EtcdMember]: ...

    async def defragment(self, url: str) -> None: ...


def wanted(member: EtcdMember, *, min_free: int, ratio: float) -> bool:
    """Whether `member` has enough free pages to be worth defragmenting."""
    free = member.db_size - member.db_size_in_use
    return member.healthy and free >= min_free and free >= ratio * member.db_size


class Defragmenter:
    name = "store.defrag"
    needs_leadership = True

    def __init__(
        self,
        store: Members,
        *,
        interval: float = INTERVAL,
        min_free: int = MIN_FREE,
        ratio: float = RATIO,
    ) -> None:
        self._store = store
        self._interval = interval
        self._min_free = min_free
        self._ratio = ratio

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.once()
            except StoreError as error:
                log.warning("store.defrag_failed", error=str(error))

    async def once(self) -> list[str]:
        """Defragment every member that needs it, one after another; returns their names."""
        done = []
        members = sorted(await self._store.cluster_members(), key=lambda m: m.leader)
        for member in members:
            if not member.client_urls or not wanted(
                member, min_free=self._min_free, ratio=self._ratio
            ):
                continue
            log.info(
                "store.defragmenting",
                member=member.name,
                db_size=member.db_size,
                in_use=member.db_size_in_use,
            )
            await self._store.defragment(member.client_urls[0])
            done.append(member.name)
        return done

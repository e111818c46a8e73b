"""FencedView: a Store whose writes also carry a fence (see `Store.fenced`).

Role: one view class for every backend. The backend does the work: its `create`, `update`
and `delete` take a `fence` keyword and check it in the same step as the write (one etcd
transaction; no await in between in memory), raising `Fenced` when the term has ended.
Reads, watches, leases and compaction pass straight through. Closing a view closes nothing:
the backend belongs to whoever made it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from controlplane.store import Change, Entry, Fence, Lease, Listing


class FenceableStore(Protocol):
    """A backend whose writes take a fence (MemoryStore, EtcdStore)."""

    async def get(self, key: str, *, fresh: bool = True) -> Entry: ...

    async def list(self, prefix: str) -> Listing: ...

    async def create(
        self, key: str, value: bytes, *, lease: int = 0, fence: Fence | None = None
    ) -> Entry: ...

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, fence: Fence | None = None
    ) -> Entry: ...

    async def delete(
        self, key: str, *, expected_revision: int | None = None, fence: Fence | None = None
    ) -> Entry: ...

    def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]: ...

    async def compact(self, revision: int) -> None: ...

    async def grant_lease(self, ttl: int) -> Lease: ...

    async def keep_alive(self, lease: int) -> int: ...

    async def revoke_lease(self, lease: int) -> None: ...


class FencedView:
    """`store`, with every write conditional on `fence`."""

    def __init__(self, store: FenceableStore, fence: Fence) -> None:
        self._store = store
        self.fence = fence

    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        return await self._store.get(key, fresh=fresh)

    async def list(self, prefix: str) -> Listing:
        return await self._store.list(prefix)

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> Entry:
        return await self._store.create(key, value, lease=lease, fence=self.fence)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> Entry:
        return await self._store.update(
            key, value, expected_revision=expected_revision, fence=self.fence
        )

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Entry:
        return await self._store.delete(key, expected_revision=expected_revision, fence=self.fence)

    def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        return self._store.watch(prefix, since=since)

    async def compact(self, revision: int) -> None:
        await self._store.compact(revision)

    async def grant_lease(self, ttl: int) -> Lease:
        return await self._store.grant_lease(ttl)

    async def keep_alive(self, lease: int) -> int:
        return await self._store.keep_alive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._store.revoke_lease(lease)

    def fenced(self, fence: Fence) -> FencedView:
        return FencedView(self._store, fence)

    async def close(self) -> None:
        """The view owns nothing: closing it leaves the store open."""

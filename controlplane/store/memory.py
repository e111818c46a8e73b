"""MemoryStore: the Store in one process's memory, for unit tests and hollow control planes.

It keeps the same revision model as etcd, so code tested against it behaves the same on etcd:
- one store-wide revision counter; every successful write takes the next revision;
- an entry's `revision` is its last write (mod revision), `create_revision` its creation;
- the change history is kept from the last compaction on, so a watch from any retained
  revision replays what it missed; a watch from before it raises `Compacted`.

Leases expire on the event loop's clock (`loop.call_later`); an expired lease deletes its keys
as etcd's does, each deletion a change of its own. A fenced view checks its fence and makes
its write with no await in between, so the check and the write are one step, as in etcd's
transaction.

Invariants: writers never wait for watchers (each watch has its own unbounded queue), and every
watch sees every change with revision > `since`, in revision order, exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

from controlplane.store import (
    AlreadyExists,
    Change,
    Compacted,
    Conflict,
    Entry,
    EventType,
    Fence,
    Fenced,
    Lease,
    Listing,
    NotFound,
    StoreError,
    Unavailable,
)
from controlplane.store.fenced import FencedView

log = structlog.get_logger(__name__)

_CLOSED = None  # queued to a watch when the store closes
_lease_ids = itertools.count(0x1000)


@dataclass(slots=True)
class _Lease:
    ttl: int
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class MemoryStore:
    """An in-memory Store with etcd's revision, compaction and watch semantics."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._revision = 0
        # History starts at revision 1; `compact(r)` keeps changes with revision >= r, as etcd
        # does (a watch may start at the compaction revision itself).
        self._compact_revision = 0
        self._history: list[Change] = []
        self._watches: set[asyncio.Queue[Change | None]] = set()
        self._leases: dict[int, _Lease] = {}
        self._closed = False

    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            raise NotFound(f"{key} not found")
        return entry

    async def current_revision(self) -> int:
        self._check_open()
        return self._revision

    async def list(self, prefix: str) -> Listing:
        self._check_open()
        entries = [self._entries[k] for k in sorted(self._entries) if k.startswith(prefix)]
        return Listing(entries=entries, revision=self._revision)

    async def create(
        self, key: str, value: bytes, *, lease: int = 0, fence: Fence | None = None
    ) -> Entry:
        self._check_open()
        self._check_fence(fence)
        if key in self._entries:
            raise AlreadyExists(f"{key} already exists")
        held = None
        if lease:
            held = self._leases.get(lease)
            if held is None:
                raise NotFound(f"lease {lease:x} not found: it expired or was revoked")
        revision = self._next_revision()
        entry = Entry(key=key, value=value, revision=revision, create_revision=revision)
        self._entries[key] = entry
        if held is not None:
            held.keys.add(key)
        self._publish(Change(EventType.PUT, key, value, revision, created=True))
        return entry

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, fence: Fence | None = None
    ) -> Entry:
        self._check_open()
        self._check_fence(fence)
        current = self._entries.get(key)
        if current is None:
            raise NotFound(f"{key} not found")
        if current.revision != expected_revision:
            raise Conflict(
                f"{key} is at revision {current.revision}, not {expected_revision}: "
                "it was changed by someone else; read it again and retry"
            )
        revision = self._next_revision()
        entry = Entry(
            key=key, value=value, revision=revision, create_revision=current.create_revision
        )
        self._entries[key] = entry
        self._publish(Change(EventType.PUT, key, value, revision))
        return entry

    async def delete(
        self, key: str, *, expected_revision: int | None = None, fence: Fence | None = None
    ) -> Entry:
        self._check_open()
        self._check_fence(fence)
        current = self._entries.get(key)
        if current is None:
            raise NotFound(f"{key} not found")
        if expected_revision is not None and current.revision != expected_revision:
            raise Conflict(
                f"{key} is at revision {current.revision}, not {expected_revision}: "
                "it was changed by someone else; read it again and retry"
            )
        self._remove(key)
        return current

    def _remove(self, key: str) -> None:
        current = self._entries.pop(key)
        for lease in self._leases.values():
            lease.keys.discard(key)
        revision = self._next_revision()
        self._publish(Change(EventType.DELETE, key, current.value, revision))

    def fenced(self, fence: Fence) -> FencedView:
        return FencedView(self, fence)

    def _check_fence(self, fence: Fence | None) -> None:
        if fence is None:
            return
        holder = self._entries.get(fence.key)
        if holder is None or holder.create_revision != fence.revision:
            raise Fenced(
                f"write refused: the term of {fence.key} at revision {fence.revision} has "
                "ended (its key is gone or was created again)"
            )

    # -- leases --------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> Lease:
        self._check_open()
        lease_id = next(_lease_ids)
        self._leases[lease_id] = _Lease(ttl=ttl)
        self._arm(lease_id)
        return Lease(id=lease_id, ttl=ttl)

    async def keep_alive(self, lease: int) -> int:
        self._check_open()
        held = self._leases.get(lease)
        if held is None:
            raise NotFound(f"lease {lease:x} not found: it expired or was revoked")
        self._arm(lease)
        return held.ttl

    async def revoke_lease(self, lease: int) -> None:
        self._check_open()
        self._end_lease(lease)

    def _arm(self, lease: int) -> None:
        held = self._leases[lease]
        if held.timer is not None:
            held.timer.cancel()
        held.timer = asyncio.get_running_loop().call_later(held.ttl, self._end_lease, lease)

    def _end_lease(self, lease: int) -> None:
        held = self._leases.pop(lease, None)
        if held is None:
            return
        if held.timer is not None:
            held.timer.cancel()
        for key in sorted(held.keys):
            if key in self._entries:
                self._remove(key)

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        self._check_open()
        if since + 1 < self._compact_revision:
            raise Compacted(
                f"cannot watch {prefix} from revision {since}: history before revision "
                f"{self._compact_revision} was compacted; list again and watch from there",
                compact_revision=self._compact_revision,
            )
        # Registering and copying the retained history happen with no await in between, so
        # every change lands either in the replay or in the queue, never both, never neither.
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        replay = [c for c in self._history if c.revision > since and c.key.startswith(prefix)]
        self._watches.add(queue)
        try:
            for change in replay:
                yield change
            while True:
                change = await queue.get()
                if change is _CLOSED:
                    return
                if change.revision > since and change.key.startswith(prefix):
                    yield change
        finally:
            self._watches.discard(queue)

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision > self._revision:
            raise StoreError(
                f"cannot compact at revision {revision}: the store is only at {self._revision}"
            )
        if revision <= self._compact_revision:
            return
        self._compact_revision = revision
        self._history = [c for c in self._history if c.revision >= revision]
        log.debug("store.compacted", revision=revision)

    async def close(self) -> None:
        """End every open watch; later calls raise `Unavailable`."""
        self._closed = True
        for held in self._leases.values():
            if held.timer is not None:
                held.timer.cancel()
        for queue in self._watches:
            queue.put_nowait(_CLOSED)

    @property
    def revision(self) -> int:
        """The store's current revision (the last write's)."""
        return self._revision

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _publish(self, change: Change) -> None:
        self._history.append(change)
        for queue in self._watches:
            queue.put_nowait(change)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the in-memory store was closed")

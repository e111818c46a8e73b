"""MemoryStore: the Store in one process's memory, for unit tests and hollow control planes.

It keeps the same revision model as etcd, so code tested against it behaves the same on etcd:
- one store-wide revision counter; every successful write takes the next revision;
- an entry's `revision` is its last write (mod revision), `create_revision` its creation;
- the change history is kept from the last compaction on, so a watch from any retained
  revision replays what it missed; a watch from before it raises `Compacted`.

Invariants: writers never wait for watchers (each watch has its own unbounded queue), and every
watch sees every change with revision > `since`, in revision order, exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog

from controlplane.store import (
    AlreadyExists,
    Change,
    Compacted,
    Conflict,
    Entry,
    EventType,
    Listing,
    NotFound,
    StoreError,
    Unavailable,
)

log = structlog.get_logger(__name__)

_CLOSED = None  # queued to a watch when the store closes


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
        self._closed = False

    async def get(self, key: str) -> Entry:
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            raise NotFound(f"{key} not found")
        return entry

    async def list(self, prefix: str) -> Listing:
        self._check_open()
        entries = [self._entries[k] for k in sorted(self._entries) if k.startswith(prefix)]
        return Listing(entries=entries, revision=self._revision)

    async def create(self, key: str, value: bytes) -> Entry:
        self._check_open()
        if key in self._entries:
            raise AlreadyExists(f"{key} already exists")
        revision = self._next_revision()
        entry = Entry(key=key, value=value, revision=revision, create_revision=revision)
        self._entries[key] = entry
        self._publish(Change(EventType.PUT, key, value, revision, created=True))
        return entry

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> Entry:
        self._check_open()
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

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Entry:
        self._check_open()
        current = self._entries.get(key)
        if current is None:
            raise NotFound(f"{key} not found")
        if expected_revision is not None and current.revision != expected_revision:
            raise Conflict(
                f"{key} is at revision {current.revision}, not {expected_revision}: "
                "it was changed by someone else; read it again and retry"
            )
        del self._entries[key]
        revision = self._next_revision()
        self._publish(Change(EventType.DELETE, key, current.value, revision))
        return current

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

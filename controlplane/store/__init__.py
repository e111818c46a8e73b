"""The Store: the control plane's only way to keep state, modelled on exactly what callers use.

Vocabulary:
- key: a "/"-separated path under the store's root, e.g. "/pilothouse/deployments/default/web".
- value: the serialized object (bytes); the store never looks inside.
- revision: the store-wide counter, increased by every write. An entry's `revision` is the
  revision of its last write (etcd's mod_revision); it is the object's `resourceVersion`.

Invariants:
- Every write is a compare-and-swap: `create` fails if the key exists, `update` and `delete`
  fail unless the entry still has `expected_revision`.
- Reads see every write that finished before them; `get(key, fresh=False)` may not (a
  cache's copy), for a reader whose next step is a compare-and-swap write.
- `list` returns the entries and the revision they were read at; `watch(prefix, since=rev)`
  yields every change with revision > rev, in order, so list-then-watch misses nothing.
- A watch from a compacted revision raises `Compacted`; callers answer by listing again.
- Connection loss raises `Unavailable`; the store itself reconnects on the next call, and a
  watch resumes from the last revision it delivered.
- Leases: `grant_lease(ttl)` gives a lease that lives `ttl` seconds after its grant or last
  `keep_alive`; a key created with `lease=` is deleted (a DELETE change) when its lease ends,
  by expiry or `revoke_lease`. A lease that ended is `NotFound` to `keep_alive`.
- Fencing: `fenced(fence)` is a view of the same store whose create, update and delete also
  compare, in the same transaction, that `fence.key` exists with create revision
  `fence.revision`; otherwise the write changes nothing (no revision is used) and raises
  `Fenced`. Reads, watches and leases through the view are the store's own. A leader's
  writes go through such a view, with its campaign key as the fence
  (see `controlplane.leader`), so a deposed leader writes nothing.

Implementations: `controlplane.store.memory.MemoryStore`, `controlplane.store.etcd.EtcdStore`.
Both pass tests/contract/test_store.py.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """Base of every error the store raises."""


class NotFound(StoreError):
    """The key does not exist."""


class AlreadyExists(StoreError):
    """`create` of a key that exists."""


class Conflict(StoreError):
    """The entry's revision is not the expected one: somebody else wrote first."""


class Compacted(StoreError):
    """The requested watch revision was compacted away: list again, then watch."""

    def __init__(self, message: str, *, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class Unavailable(StoreError):
    """The backing store cannot be reached right now; retry later."""


class Fenced(StoreError):
    """A fenced write was refused: its fence key is gone or was created again (another term
    began). Nothing was written; the writer has lost the leadership it wrote for."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A term of leadership: `key` must exist with create revision `revision`."""

    key: str
    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int  # seconds, as granted (etcd may raise a short TTL to its minimum)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    revision: int
    create_revision: int


@dataclass(frozen=True, slots=True)
class Listing:
    entries: list[Entry]
    revision: int


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Change:
    """One write seen by a watch. For DELETE, `value` is the last value before deletion."""

    type: EventType
    key: str
    value: bytes
    revision: int
    created: bool = False


class Store(Protocol):
    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        """The entry of `key`; `fresh=False` allows a cached copy that may lag the latest
        writes (for a compare-and-swap writer: its write checks the revision anyway)."""
        ...

    async def list(self, prefix: str) -> Listing: ...

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> Entry:
        """Create `key`; with `lease`, the key ends with that lease."""
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> Entry: ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> Entry:
        """Delete and return the deleted entry; `None` means unconditionally."""
        ...

    def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]: ...

    async def compact(self, revision: int) -> None: ...

    async def grant_lease(self, ttl: int) -> Lease: ...

    async def keep_alive(self, lease: int) -> int:
        """Renew `lease`; returns the TTL it now has; `NotFound` when it has ended."""
        ...

    async def revoke_lease(self, lease: int) -> None:
        """End `lease` now, deleting its keys (nothing if it has already ended)."""
        ...

    def fenced(self, fence: Fence) -> Store:
        """This store, with every write also conditional on `fence` (see the module)."""
        ...

    async def close(self) -> None: ...

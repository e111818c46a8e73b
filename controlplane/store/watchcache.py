"""WatchCache: a Store whose reads and watches are served from memory, fed by one watch.

Role: the control plane's API, informers and writers read through it, so a thousand watching
clients cost one etcd watch, and a Get or List costs no etcd range (as the Kubernetes API
server's watch cache). Writes, leases and compaction go to the backend unchanged.

Vocabulary:
- revision: the backend revision the cache has applied every change up to;
- window: the most recent changes (at most `window` of them); `floor` is the revision after
  which the window holds every change, so a watch from `since >= floor` is replayed from it.

Invariants:
- The cache watches every key of the backend, so every write moves its revision: once
  `revision >= R`, it holds exactly the backend's state at R or later.
- A read is consistent with every write that finished before it began: it asks the backend
  for its current revision (concurrent reads share one such question, asked after each of
  them began) and waits until the cache has reached it; if that does not happen within
  `wait` seconds (a watch cut off, writes outside the watched keys), the read goes to the
  backend. `get(key, fresh=False)` skips the question: for compare-and-swap writers, whose
  stale read at worst costs a `Conflict` and a fresh retry.
- A watch from `since` yields every change with revision > since under its prefix, in order,
  once: replayed from the window, then live. `since < floor` raises `Compacted` (list again),
  and so does a watcher that falls `queue_limit` changes behind, or any watcher when the
  cache itself had to list again (the backend compacted past it); none of them sees a gap.
  `compact(r)` through the cache refuses watches from before r as the backend would.
- Before its first list has loaded, the cache passes reads and watches to the backend.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import structlog

from controlplane.store import (
    Change,
    Compacted,
    Entry,
    EventType,
    Fence,
    Lease,
    Listing,
    NotFound,
    StoreError,
)
from controlplane.store.fenced import FenceableStore, FencedView

log = structlog.get_logger(__name__)

WINDOW = 20_000  # changes kept for watches from a recent revision (~20-40 MB of pods)
QUEUE_LIMIT = 100_000  # changes a watcher may fall behind before it must list again
WAIT = 3.0  # seconds a read waits for the cache before it reads the backend instead
_END = None  # queued to a watcher: the cache stopped
_sequence = itertools.count()


class Backend(FenceableStore, Protocol):
    """A store the cache can follow: a FenceableStore that also tells its current revision."""

    async def current_revision(self) -> int: ...

    async def close(self) -> None: ...


class _Watcher:
    """One watch's queue; `lagging` ends it with `Compacted` once the queue is drained."""

    __slots__ = ("lagging", "prefix", "queue")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue: deque[Change | None] = deque()
        self.lagging = False


class WatchCache:
    """A Store over `backend` serving get, list and watch from memory. A Runnable."""

    name = "store.cache"

    def __init__(
        self,
        backend: Backend,
        *,
        window: int = WINDOW,
        queue_limit: int = QUEUE_LIMIT,
        wait: float = WAIT,
    ) -> None:
        self._backend = backend
        self._queue_limit = queue_limit
        self._wait = wait
        self._groups: dict[str, dict[str, Entry]] = {}
        self._window: deque[Change] = deque(maxlen=window)
        self.revision = 0
        self.floor = 0
        self._synced = False
        self._watchers: dict[_Watcher, asyncio.Event] = {}
        self._reached: list[tuple[int, int, asyncio.Future[None]]] = []
        self._question: asyncio.Future[int] | None = None  # not yet asked; later readers join
        self._asking = False

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def synced(self) -> bool:
        return self._synced

    # ------------------------------------------------------------------ feeding

    async def run(self) -> None:
        delay = 0.1
        need_list = True
        try:
            while True:
                try:
                    if need_list:
                        await self._load()
                        need_list = False
                    async for change in self._backend.watch("", since=self.revision):
                        self._apply(change)
                        delay = 0.1
                    await asyncio.sleep(delay)  # the backend ended the watch: it is closing
                except Compacted:
                    log.info("store.cache_relist", revision=self.revision)
                    need_list = True
                except StoreError as error:
                    log.warning("store.cache_watch_failed", error=str(error), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            self._synced = False
            self._end_watchers()

    async def _load(self) -> None:
        listing = await self._backend.list("")
        self._groups = {}
        for entry in listing.entries:
            self._groups.setdefault(_group(entry.key), {})[entry.key] = entry
        self._window.clear()
        self.revision = self.floor = listing.revision
        if self._synced:
            self._end_watchers(lagging=True)  # they may have missed changes: list again
        self._synced = True
        self._wake_readers()
        log.debug("store.cache_loaded", revision=self.revision, keys=len(listing.entries))

    def _apply(self, change: Change) -> None:
        group = self._groups.setdefault(_group(change.key), {})
        if change.type is EventType.DELETE:
            group.pop(change.key, None)
        else:
            previous = group.get(change.key)
            created = change.revision if change.created or previous is None else 0
            group[change.key] = Entry(
                key=change.key,
                value=change.value,
                revision=change.revision,
                create_revision=created or previous.create_revision,  # type: ignore[union-attr]
            )
        if len(self._window) == self._window.maxlen:
            self.floor = self._window[0].revision
        self._window.append(change)
        self.revision = change.revision
        for watcher, wake in self._watchers.items():
            if watcher.lagging or not change.key.startswith(watcher.prefix):
                continue
            if len(watcher.queue) >= self._queue_limit:
                watcher.lagging = True
            else:
                watcher.queue.append(change)
            wake.set()
        self._wake_readers()

    # -------------------------------------------------------------------- reads

    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        if not (await self._fresh() if fresh else self._synced):
            return await self._backend.get(key)
        entry = self._groups.get(_group(key), {}).get(key)
        if entry is None:
            raise NotFound(f"{key} not found")
        return entry

    async def list(self, prefix: str) -> Listing:
        if not await self._fresh():
            return await self._backend.list(prefix)
        entries: list[Entry] = []
        for name, group in self._groups.items():
            if not name or prefix.startswith(name) or name.startswith(prefix):
                entries.extend(e for k, e in group.items() if k.startswith(prefix))
        entries.sort(key=lambda e: e.key)
        return Listing(entries=entries, revision=self.revision)

    async def _fresh(self) -> bool:
        """Wait until the cache holds every write finished before now; False: read the
        backend instead (not loaded yet, or not caught up within `wait`)."""
        if not self._synced:
            return False
        target = await self._current_revision()
        if self.revision >= target:
            return True
        reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._reached, (target, next(_sequence), reached))
        try:
            async with asyncio.timeout(self._wait):
                await reached
        except TimeoutError:
            log.info("store.cache_behind", revision=self.revision, wanted=target)
            return False
        return self._synced

    async def _current_revision(self) -> int:
        """The backend's current revision, asked after this call began; callers that come
        while a question is out share the next one."""
        if self._question is None:
            self._question = asyncio.get_running_loop().create_future()
            if not self._asking:
                asyncio.get_running_loop().create_task(self._ask())
        return await asyncio.shield(self._question)

    async def _ask(self) -> None:
        self._asking = True
        try:
            while self._question is not None:
                question, self._question = self._question, None
                try:
                    question.set_result(await self._backend.current_revision())
                except Exception as error:  # handed to every reader waiting
                    question.set_exception(error)
                    question.exception()  # retrieved: readers that left raise no warning
        finally:
            self._asking = False

    def _wake_readers(self) -> None:
        while self._reached and (self._reached[0][0] <= self.revision or not self._synced):
            _, _, reached = heapq.heappop(self._reached)
            if not reached.done():
                reached.set_result(None)

    # ------------------------------------------------------------------- watches

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        if not self._synced:
            async for change in self._backend.watch(prefix, since=since):
                yield change
            return
        if since < self.floor:
            raise Compacted(
                f"cannot watch {prefix} from revision {since}: the watch cache keeps changes "
                f"after revision {self.floor}; list again and watch from there",
                compact_revision=self.floor,
            )
        # Registering and copying the window happen with no await in between, so every
        # change lands either in the replay or in the queue, never both, never neither.
        watcher, wake = _Watcher(prefix), asyncio.Event()
        replay = [c for c in self._window if c.revision > since and c.key.startswith(prefix)]
        self._watchers[watcher] = wake
        try:
            for change in replay:
                yield change
            while True:
                while watcher.queue:
                    change = watcher.queue.popleft()
                    if change is _END:
                        return
                    if change.revision > since:
                        yield change
                if watcher.lagging:
                    raise Compacted(
                        f"the watch of {prefix} fell too far behind; list again",
                        compact_revision=self.revision,
                    )
                wake.clear()
                await wake.wait()
        finally:
            self._watchers.pop(watcher, None)

    def _end_watchers(self, *, lagging: bool = False) -> None:
        """End every watch: with `Compacted` when `lagging`, else as the store closing."""
        for watcher, wake in self._watchers.items():
            if lagging:
                watcher.lagging = True
            else:
                watcher.queue.append(_END)
            wake.set()

    # ------------------------------------------------------------------- writes

    async def create(
        self, key: str, value: bytes, *, lease: int = 0, fence: Fence | None = None
    ) -> Entry:
        return await self._backend.create(key, value, lease=lease, fence=fence)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, fence: Fence | None = None
    ) -> Entry:
        return await self._backend.update(
            key, value, expected_revision=expected_revision, fence=fence
        )

    async def delete(
        self, key: str, *, expected_revision: int | None = None, fence: Fence | None = None
    ) -> Entry:
        return await self._backend.delete(key, expected_revision=expected_revision, fence=fence)

    async def compact(self, revision: int) -> None:
        """Compact the backend; watches from before `revision` are then refused here too."""
        await self._backend.compact(revision)
        self.floor = max(self.floor, revision - 1)

    async def current_revision(self) -> int:
        return await self._backend.current_revision()

    async def grant_lease(self, ttl: int) -> Lease:
        return await self._backend.grant_lease(ttl)

    async def keep_alive(self, lease: int) -> int:
        return await self._backend.keep_alive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._backend.revoke_lease(lease)

    def fenced(self, fence: Fence) -> FencedView:
        return FencedView(self, fence)

    async def close(self) -> None:
        """End every watch served from here, and close the backend."""
        self._synced = False
        self._end_watchers()
        await self._backend.close()


def _group(key: str) -> str:
    """The index a key is kept under: its first two path segments ("/pilothouse/pods/")."""
    second = key.find("/", 1)
    third = key.find("/", second + 1) if second >= 0 else -1
    return key[: third + 1] if third >= 0 else ""

"""Node leases: heartbeats received by any control-plane member, seen by every member.

Agents heartbeat to whichever member they reach; the leader decides liveness. So each member
publishes, coalesced, which nodes it heard from, and every member watches what all of them
publish:
- `beat(node)` notes a heartbeat this member accepted (the NodeRegistry calls it), and
  `follow(streaming)` names the nodes this member hears now through their open streams
  (`controlplane.nodes.registry`), which count as heard at every write;
- every `flush_interval` (0.5 s) a member that heard anything since its last write writes ONE
  key, `/pilothouse/nodeleases/<member>`, with each of those nodes and how long ago (at the
  time of writing) it was heard: one etcd write per member per interval, however many nodes;
- every member watches the prefix and records, on its own clock, when each node
  was last heard by anyone: arrival time minus the age reported (only writes that arrive
  while it watches count; a stored value says nothing about now). `last_seen(node)` answers
  the node-lifecycle controller and the registry's takeover rule.

Invariants: no clocks are compared across machines (ages are durations, arrival times are
local); a member's key is written only by that member (compare-and-swap on its own last
revision; re-read after a restart or a conflict); a watch that falls behind compaction lists
again. A new leader starts with whatever the watch shows, and its node-lifecycle controller
gives every node a full grace period from its own start anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable

import structlog

from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.store import (
    AlreadyExists,
    Compacted,
    Conflict,
    EventType,
    NotFound,
    Store,
    StoreError,
)

log = structlog.get_logger(__name__)

PREFIX = "/pilothouse/nodeleases/"
FLUSH_INTERVAL = 0.5
_MAX_BACKOFF = 2.0


class NodeLeases:
    """A Runnable on every member: publish this member's heartbeats, watch everyone's."""

    name = "nodeleases"

    def __init__(
        self,
        store: Store,
        *,
        member: str,
        clock: Clock | None = None,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self._store = store
        self.member = member
        self._clock = clock or SystemClock()
        self._flush_interval = flush_interval
        self._pending: dict[str, float] = {}  # node -> local time of its latest beat
        self._seen: dict[str, float] = {}  # node -> local time it was last heard by anyone
        self._revision = 0  # our key's last revision (0: unknown, read it first)
        self._streaming: Callable[[], Iterable[str]] = tuple

    # ------------------------------------------------------------------ API

    def follow(self, streaming: Callable[[], Iterable[str]]) -> None:
        """`streaming()` names the nodes heard now (their streams are open here)."""
        self._streaming = streaming

    def beat(self, node: str, *, at: float | None = None) -> None:
        at = self._clock.now() if at is None else at
        self._pending[node] = max(self._pending.get(node, 0.0), at)
        self._seen[node] = max(self._seen.get(node, 0.0), at)

    def last_seen(self, node: str) -> float | None:
        return self._seen.get(node)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._publish(), name="nodeleases.publish")
            group.create_task(self._observe(), name="nodeleases.observe")

    # -------------------------------------------------------------- publish

    async def _publish(self) -> None:
        while True:
            await self._clock.sleep(self._flush_interval)
            now = self._clock.now()
            for node in self._streaming():
                self._pending[node] = now
            if not self._pending:
                continue
            pending, self._pending = self._pending, {}
            try:
                await self._write(pending)
            except StoreError as error:
                log.debug("nodeleases.write_failed", member=self.member, error=str(error))
                for node, at in pending.items():  # keep them for the next write
                    self._pending[node] = max(self._pending.get(node, 0.0), at)

    async def _write(self, pending: dict[str, float]) -> None:
        now = self._clock.now()
        value = json.dumps(
            {"beats": {node: round(max(now - at, 0.0), 3) for node, at in pending.items()}}
        ).encode()
        key = PREFIX + self.member
        for _ in range(3):
            try:
                if self._revision:
                    entry = await self._store.update(key, value, expected_revision=self._revision)
                else:
                    entry = await self._store.create(key, value)
                self._revision = entry.revision
                return
            except (Conflict, NotFound, AlreadyExists):
                try:
                    self._revision = (await self._store.get(key)).revision
                except NotFound:
                    self._revision = 0

    # -------------------------------------------------------------- observe

    async def _observe(self) -> None:
        backoff = 0.1
        while True:
            try:
                # What is stored already says nothing about *now* (an age at some earlier
                # write): only changes that arrive while watching count.
                listing = await self._store.list(PREFIX)
                backoff = 0.1
                async for change in self._store.watch(PREFIX, since=listing.revision):
                    if change.type is EventType.PUT:
                        self._note(change.value)
            except Compacted:
                continue
            except StoreError as error:
                log.debug("nodeleases.watch_failed", error=str(error), retry_in=backoff)
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _note(self, value: bytes) -> None:
        now = self._clock.now()
        beats: dict[str, float] = {}
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            beats = {str(k): float(v) for k, v in json.loads(value)["beats"].items()}
        for node, age in beats.items():
            heard = now - age
            if heard > self._seen.get(node, 0.0):
                self._seen[node] = heard

"""The node's desired pod set written to disk in the background, one write at a time.

Role: the pod manager accepts a new desired set at once and calls `changed()`; this writes
the newest set (`nodeagent.state.DesiredPods`) until the version on disk has caught up, so a
burst of syncs costs one or two writes. A worker about to create a container waits for
`persisted(version)`: no container is created for a pod before a set holding it is on disk,
so a restarted agent re-adopts every container it made.

Invariants: `version` counts accepted changes and never goes back; `persisted(v)` returns
only once a set of version v or newer is on disk; a failed write is retried every second
(and said so); `close()` finishes the write in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from nodeagent.state import DesiredPods
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


class DesiredSetWriter:
    def __init__(self, state: DesiredPods, *, current: Callable[[], list[objects_pb2.Pod]]) -> None:
        """`current()`: the desired set as it is now (read when a write starts)."""
        self.state = state
        self._current = current
        self.version = 0
        self._saved = 0
        self._saved_changed = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """The desired set changed: write it soon."""
        self.version += 1
        if self._saver is None:
            self._saver = asyncio.create_task(self._persist(), name="persist desired pods")

    async def persisted(self, version: int) -> None:
        """Return once a desired set of `version` or newer is on disk."""
        while self._saved < version:
            await self._saved_changed.wait()

    async def close(self) -> None:
        if self._saver is not None:
            await asyncio.gather(self._saver, return_exceptions=True)

    async def _persist(self) -> None:
        """Write the desired set until the newest version is on disk."""
        try:
            while self._saved < self.version:
                version, pods = self.version, self._current()
                try:
                    await asyncio.to_thread(self.state.save, pods)
                except OSError as exc:
                    log.error("pods.not_persisted", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                self._saved = version
                self._saved_changed.set()
                self._saved_changed = asyncio.Event()
        finally:
            self._saver = None

"""The work queue: which keys need reconciling, handed out so no key is worked on twice at once.

Vocabulary:
- key: what a reconciler works on, usually "namespace/name".
- dirty: keys waiting to be handed out; processing: keys a worker holds right now.

Invariants:
- A key is queued at most once however often it is added (de-duplication).
- A key is never handed to two workers at once; a key added while it is being processed is
  handed out again after `done(key)` (so the change that arrived meanwhile is not lost).
- `add_after(key, delay)` adds the key after `delay` (the earliest pending deadline wins);
  `add_rate_limited(key)` does so with the key's own exponential backoff (5 ms doubling to
  30 s by default), which `forget(key)` resets.
- Time comes from the injected `Clock`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from controlplane.reconcile.clock import Clock, SystemClock


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Per-key exponential backoff: `base * 2**failures`, at most `cap` seconds."""

    base: float = 0.005
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.base * (2 ** min(failures, 64)), self.cap)


class WorkQueue:
    def __init__(self, *, clock: Clock | None = None, backoff: Backoff | None = None) -> None:
        self._clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._deadlines: dict[str, float] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._shut_down = False

    # ------------------------------------------------------------------- adding

    def add(self, key: str) -> None:
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wake()

    def add_after(self, key: str, delay: float) -> None:
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        deadline = self._clock.now() + delay
        pending = self._deadlines.get(key)
        if pending is not None and pending <= deadline:
            return
        self._deadlines[key] = deadline
        timer = asyncio.get_running_loop().create_task(
            self._add_at(key, deadline, delay), name=f"workqueue.after:{key}"
        )
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    def add_rate_limited(self, key: str) -> float:
        """Add `key` after its backoff; returns that delay (for logging)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self._backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    # ----------------------------------------------------------------- handing out

    def depth(self) -> int:
        """Keys waiting to be handed to a worker (metrics)."""
        return len(self._queue)

    async def get(self) -> str:
        """The next key to process; wait for one. Raises `ShutDown` once shut down."""
        while not self._queue:
            if self._shut_down:
                raise ShutDown
            # No await between the emptiness check and clear(): no wake-up can be lost.
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shut_down(self) -> None:
        self._shut_down = True
        for timer in list(self._timers):
            timer.cancel()
        self._wake()

    # ---------------------------------------------------------------------- views

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    @property
    def waiting(self) -> frozenset[str]:
        """Keys scheduled by `add_after` that have not come due yet."""
        return frozenset(self._deadlines)

    # ------------------------------------------------------------------ internals

    async def _add_at(self, key: str, deadline: float, delay: float) -> None:
        await self._clock.sleep(delay)
        if self._deadlines.get(key) == deadline:
            del self._deadlines[key]
            self.add(key)

    def _wake(self) -> None:
        self._ready.set()

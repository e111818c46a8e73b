"""Time as controllers see it: `now()` and `sleep()`, real or virtual.

Invariants: production code takes a `Clock` and never calls `time` or `asyncio.sleep` for
anything a test might want to fast-forward (backoff, requeue-after, minReadySeconds).
`ManualClock` moves only when a test calls `advance`, and wakes every sleeper whose deadline
has passed, in deadline order, so a backoff test runs in microseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

_EPSILON = 1e-6


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall time: comparable with object timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that stands still until `advance` is called."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        target = self._now + seconds
        # Deadlines and targets are sums of floats near 1.7e9 (ulp ~0.24 µs): allow for that.
        while self._sleepers and self._sleepers[0][0] <= target + _EPSILON:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = target
        await settle()

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, future in self._sleepers if not future.done())


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until the loop is quiet (a few scheduling rounds)."""
    for _ in range(rounds):
        await asyncio.sleep(0)

"""The image store's gate: many writers at once, or the garbage collector alone.

Pulls, imports and prepares hold it shared; `gc` holds it exclusively, so it never removes
a blob or layer that a pull is writing or a prepare is about to name.

Invariant: an exclusive holder enters only when no one holds the gate, and no shared holder
enters while an exclusive one holds it (a collector that waits does not hold up new pulls).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Gate:
    """Many writers (pulls, imports, prepares) share it; the garbage collector excludes them."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()

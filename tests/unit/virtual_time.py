"""Tests on virtual time: `@on_virtual_time` runs an async test on a `VirtualTimeLoop`, whose
clock jumps to the next timer whenever the loop would only wait, so periods of seconds cost
milliseconds and counts of periodic checks are exact.

Invariant: while work runs in threads (asyncio.to_thread, run_in_executor) the loop waits for
real, so a thread's result is never overtaken by a jump.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any


class _SkippingSelector:
    """Lets the clock jump to the next timer when nothing is left to do but wait for it.

    While work runs in threads (asyncio.to_thread), it waits for real: the thread's result
    wakes the loop. Otherwise it polls I/O for a millisecond and then jumps.
    """

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout <= 0 or self._loop.threads:
            return self._real.select(timeout)
        events = self._real.select(min(timeout, 0.001))
        if not events:
            self._loop.offset += timeout
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0
        self.threads = 0  # executor jobs not finished yet
        self._selector = _SkippingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return super().time() + self.offset

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        self.threads += 1

        def done(_: object) -> None:
            self.threads -= 1

        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(done)
        return future


def on_virtual_time(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(test(*args, **kwargs))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run

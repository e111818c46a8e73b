"""Polling for the unit tests that run real tasks in the test's loop: `eventually(check, what)`.

Invariant: only an answer that `is True` ends the wait (a truthy list or a message does not),
so a check can return what it saw instead, and the failure shows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def eventually(check: Callable[[], object], what: str, within: float = 5.0) -> None:
    """Poll `check` (plain or async) until it returns True; fail with `what` and its last
    answer after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result is True:
            return
        if loop.time() > deadline:
            pytest.fail(f"{what}: got {result!r}")
        await asyncio.sleep(0.01)

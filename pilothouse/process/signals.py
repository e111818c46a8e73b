"""Signals: SIGTERM and SIGINT stop a process by cancelling its main coroutine, once.

Invariant: only the first signal cancels; later ones are ignored, so a second Ctrl-C cannot
interrupt the clean-up the first one started. A process that was signalled before its main
coroutine even began exits 0, as one that stopped cleanly.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_until_signalled(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` to its exit code; a stop signal cancels it (it cleans up and returns)."""
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(main)
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            running.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        return await running
    except asyncio.CancelledError:  # `main` cleaned up and let it through, or never began
        return 0

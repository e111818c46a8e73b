"""Container log rotation: the agent's periodic pass that keeps each container's CRI log small.

Invariant: a log that grew past `max_bytes` is moved aside to `<log>.1` (one previous file is
kept, as the kubelet keeps `containerLogMaxFiles`) and its monitor reopens a fresh file, so
`pilothouse logs` reads across the rotation. While no agent runs, the monitor's own size cap
(larger than `max_bytes`) is the backstop.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_INTERVAL = 10.0


class Rotating(Protocol):
    async def rotate_logs(self, *, max_bytes: int) -> list[str]: ...


async def rotate_forever(
    runtime: Rotating, *, max_bytes: int = DEFAULT_MAX_BYTES, interval: float = DEFAULT_INTERVAL
) -> None:
    """Rotate every `interval` seconds until cancelled; a failed pass is logged, not fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            rotated = await runtime.rotate_logs(max_bytes=max_bytes)
        except OSError as error:
            log.warning("logs.rotate_failed", error=str(error))
            continue
        for container in rotated:
            log.info("logs.rotated", container=container)

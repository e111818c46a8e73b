"""The agent rotates container logs periodically and survives a failed pass."""

from __future__ import annotations

import asyncio
import contextlib

from nodeagent.runtime import logrotation


class Runtime:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def rotate_logs(self, *, max_bytes: int) -> list[str]:
        self.calls.append(max_bytes)
        if len(self.calls) == 1:
            raise OSError("disk went away")
        return ["c1"]


async def test_rotation_runs_every_interval_and_outlives_a_failed_pass() -> None:
    runtime = Runtime()
    task = asyncio.create_task(logrotation.rotate_forever(runtime, max_bytes=1234, interval=0.01))
    for _ in range(3000):  # up to 30 s on a loaded machine; a few passes when idle
        if len(runtime.calls) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(runtime.calls) >= 3, "log rotation stopped after a failed pass"
    assert set(runtime.calls) == {1234}

"""Reading a container's log file (CRI format) as the bytes the container wrote.

CRI log lines are `<RFC 3339 time> <stdout|stderr> <P|F> <content>`; `F` ends a line of output
and `P` is a partial line continued by the next record. Invariants: `read` yields whole output
lines (decoded content only); `tail_lines` < 0 means everything; with `follow` it keeps reading
new lines until `alive()` turns false and the file is drained.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

POLL_SECONDS = 0.1


def decode(record: bytes) -> bytes:
    """The content of one CRI record (its line, with a newline unless it is partial)."""
    parts = record.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return record if record.endswith(b"\n") else record + b"\n"
    content = parts[3] if len(parts) == 4 else b""
    return content if parts[2] == b"P" else content + b"\n"


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    *lines, rest = data.split(b"\n")
    return [line + b"\n" for line in lines], rest


async def read(
    path: Path,
    *,
    tail_lines: int = -1,
    follow: bool = False,
    alive: Callable[[], bool] = lambda: False,
) -> AsyncIterator[bytes]:
    try:
        f = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        if not follow:
            return
        while not await asyncio.to_thread(path.exists):
            if not alive():
                return
            await asyncio.sleep(POLL_SECONDS)
        f = await asyncio.to_thread(open, path, "rb")
    with f:
        data = await asyncio.to_thread(f.read)
        records, rest = _split(data)
        if tail_lines >= 0:
            records = list(deque(records, maxlen=tail_lines)) if tail_lines else []
        if records:
            yield b"".join(decode(r) for r in records)
        while follow:
            more = await asyncio.to_thread(f.read)
            if more:
                records, rest = _split(rest + more)
                if records:
                    yield b"".join(decode(r) for r in records)
                continue
            if not alive():
                if rest:
                    yield decode(rest)
                return
            await asyncio.sleep(POLL_SECONDS)

"""Processes the runtime starts or watches, waited on without polling and without threads.

runc and conmon are spawned with a plain `Popen` (it returns once the child exec'd), and any
process, our child or not (a container, its monitor), is awaited through a pidfd registered
with the event loop.

Invariants: nothing here blocks the event loop for longer than a read of a ready pipe; a
process that is already gone (or a zombie) counts as ended; every descriptor opened here is
closed before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Spawn without asyncio's subprocess machinery: Popen returns once the child exec'd
    (about a millisecond, vfork), and `exited` waits on a pidfd, with no watcher thread per
    child. On a start path of a few tens of milliseconds this is measurable."""
    return subprocess.Popen(args, **kwargs)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_quietly(pid: int, sig: int) -> None:
    """Send `sig` to `pid`; a process already gone is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def exited(pid: int) -> None:
    """Return when process `pid` (not necessarily our child) has ended: a pidfd, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        if not alive(pid):
            return
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def read_line(fd: int) -> bytes:
    """One line from a pipe, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = bytearray()
    ready: asyncio.Queue[None] = asyncio.Queue()
    loop.add_reader(fd, ready.put_nowait, None)
    try:
        while b"\n" not in buf:
            await ready.get()
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                break
            buf += chunk
    finally:
        loop.remove_reader(fd)
    return bytes(buf.split(b"\n", 1)[0])

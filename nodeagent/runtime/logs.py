"""Reading a container's CRI-format log file: the last N lines, then following it.

The monitor writes one record per line: `<RFC 3339 time> <stream> <tag> <payload>`, where
stream is stdout or stderr and tag is F (full line) or P (partial: the line continues in the
next record of the same stream). Readers get the payload lines back, partial records joined.

Rotation: the monitor replaces the file when it grows past its size limit (a new inode at the
same path); the previous file may be kept as `<path>.1`. `tail` reads across the two, and
`follow` finishes the old file before it moves to the new one, so no line is read twice and
none written before the rotation is lost.

Invariants: reading never writes or locks the file, and a malformed record is skipped, not
fatal (a log is evidence, not input).
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO


class Stream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class LogLine:
    time: datetime
    stream: Stream
    text: str


@dataclass(frozen=True, slots=True)
class _Record:
    time: datetime
    stream: Stream
    partial: bool
    payload: str


def parse_record(raw: str) -> _Record | None:
    """One CRI log record, or None if the line is not one."""
    parts = raw.rstrip("\n").split(" ", 3)
    if len(parts) < 3:
        return None
    stamp, stream, tag = parts[:3]
    payload = parts[3] if len(parts) == 4 else ""
    try:
        kind = Stream(stream)
        when = parse_time(stamp)
    except ValueError:
        return None
    return _Record(time=when, stream=kind, partial=tag.split(":")[0] == "P", payload=payload)


def parse_time(stamp: str) -> datetime:
    """RFC 3339 with up to nanoseconds ("...T05:37:19.106266281+00:00" or "...Z")."""
    stamp = stamp.replace("Z", "+00:00")
    if "." in stamp:
        head, _, rest = stamp.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:]
        stamp = f"{head}.{frac[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(stamp)


class _Joiner:
    """Joins partial records into lines, per stream."""

    def __init__(self) -> None:
        self._pending: dict[Stream, list[str]] = {}
        self.last_time = datetime.fromtimestamp(0, UTC)

    def feed(self, raw: str) -> LogLine | None:
        rec = parse_record(raw)
        if rec is None:
            return None
        self.last_time = rec.time
        if rec.partial:
            self._pending.setdefault(rec.stream, []).append(rec.payload)
            return None
        text = "".join([*self._pending.pop(rec.stream, []), rec.payload])
        return LogLine(time=rec.time, stream=rec.stream, text=text)

    def flush(self, when: datetime) -> list[LogLine]:
        """Lines left unfinished at the end of the log (a last write without a newline)."""
        out = [LogLine(time=when, stream=s, text="".join(p)) for s, p in self._pending.items()]
        self._pending.clear()
        return out


def _lines(raws: Iterable[str], *, flush: bool = True) -> Iterator[LogLine]:
    joiner = _Joiner()
    for raw in raws:
        if (line := joiner.feed(raw)) is not None:
            yield line
    if flush:
        yield from joiner.flush(joiner.last_time)


def rotated_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def tail(path: Path, lines: int | None = None) -> list[LogLine]:
    """The last `lines` lines (all if None), including the previous file after a rotation."""
    keep: deque[LogLine] = deque(maxlen=lines) if lines is not None else deque()
    if lines == 0:
        return []
    for p in (rotated_path(path), path):
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                keep.extend(_lines(f))
        except FileNotFoundError:
            continue
    return list(keep)


async def follow(
    path: Path,
    *,
    lines: int | None = None,
    poll_interval: float = 0.1,
    done: Callable[[], bool] | None = None,
) -> AsyncIterator[LogLine]:
    """Yield the last `lines` lines, then each new line as it is written.

    Runs until cancelled, or until `done()` is true and everything written so far was read
    (pass the container's "has stopped" test to end with the container).
    """
    f: BinaryIO | None = None
    joiner = _Joiner()
    carry = b""
    try:
        f, start = _open_at_tail(path, lines)
        for line in start:
            yield line
        while True:
            finished = done() if done is not None else False
            progressed = False
            if f is None:
                f = _open(path)
            if f is not None:
                chunk = f.read()
                if chunk:
                    progressed = True
                    carry += chunk
                    *complete, carry = carry.split(b"\n")
                    for raw in complete:
                        if (line := joiner.feed(raw.decode("utf-8", "replace"))) is not None:
                            yield line
                elif _replaced(f, path):
                    f.close()
                    f, carry = _open(path), b""
                    progressed = True
            if finished and not progressed:
                for line in joiner.flush(joiner.last_time):
                    yield line
                return
            if not progressed:
                await asyncio.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _open_at_tail(path: Path, lines: int | None) -> tuple[BinaryIO | None, list[LogLine]]:
    """Open the file, positioned after what was read for the initial tail."""
    f = _open(path)
    start: list[LogLine] = []
    if lines != 0:
        old = rotated_path(path)
        raws: list[str] = []
        if old.exists():
            raws += old.read_text(encoding="utf-8", errors="replace").splitlines()
        if f is not None:
            data = f.read()
            cut = data.rfind(b"\n") + 1  # a half-written last record is read when complete
            f.seek(cut)
            raws += data[:cut].decode("utf-8", "replace").splitlines()
        start = list(_lines(raws))
        if lines is not None:
            start = start[-lines:]
    elif f is not None:
        f.seek(0, os.SEEK_END)
    return f, start


def _replaced(f: BinaryIO, path: Path) -> bool:
    """Whether `path` now names another file, or ours shrank (truncated in place)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) != (own.st_ino, own.st_dev) or own.st_size < f.tell()

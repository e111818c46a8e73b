"""Reading CRI-format logs: tail, partial lines, rotation, following (no root, no runc)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nodeagent.runtime import logs

T = "2024-01-01T00:00:00.123456789Z"


def _write(path: Path, *records: str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for r in records:
            f.write(r + "\n")


def test_tail_returns_payloads_and_joins_partial_records(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write(
        log,
        f"{T} stdout F one",
        f"{T} stdout P tw",
        f"{T} stderr F oops",
        f"{T} stdout F o",
        "garbage line",
        f"{T} stdout F with  two spaces",
    )
    lines = logs.tail(log)
    assert [(line.stream, line.text) for line in lines] == [
        (logs.Stream.STDOUT, "one"),
        (logs.Stream.STDERR, "oops"),
        (logs.Stream.STDOUT, "two"),
        (logs.Stream.STDOUT, "with  two spaces"),
    ]
    assert [line.text for line in logs.tail(log, 2)] == ["two", "with  two spaces"]
    assert logs.tail(log, 0) == []
    assert lines[0].time.microsecond == 123456


def test_tail_reads_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write(logs.rotated_path(log), f"{T} stdout F old-1", f"{T} stdout F old-2")
    _write(log, f"{T} stdout F new-1")
    assert [line.text for line in logs.tail(log, 2)] == ["old-2", "new-1"]
    assert logs.tail(tmp_path / "missing.log") == []


def test_timestamps_with_offsets_parse() -> None:
    when = logs.parse_time("2026-11-29T05:37:19.106266281+00:00")
    assert when.utcoffset() is not None and when.second == 19


async def test_follow_sees_new_lines_and_survives_rotation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write(log, f"{T} stdout F a", f"{T} stdout F b")
    finished = False
    seen: list[str] = []

    async def reader() -> None:
        async for line in logs.follow(log, lines=1, poll_interval=0.01, done=lambda: finished):
            seen.append(line.text)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.05)
    _write(log, f"{T} stdout F c")
    await asyncio.sleep(0.05)
    # Rotation as the monitor does it: a new file takes the old one's name.
    _write(log, f"{T} stdout F d")
    os.replace(log, logs.rotated_path(log))
    _write(log, f"{T} stdout F e")
    await asyncio.sleep(0.05)
    finished = True
    await asyncio.wait_for(task, 5)
    assert seen == ["b", "c", "d", "e"], "follow lost or repeated lines around a rotation"


async def test_follow_of_a_missing_file_waits_for_it(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    finished = False
    seen: list[str] = []

    async def reader() -> None:
        async for line in logs.follow(log, poll_interval=0.01, done=lambda: finished):
            seen.append(line.text)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.03)
    _write(log, f"{T} stdout F hello", f"{T} stdout P no-newline")
    await asyncio.sleep(0.05)
    finished = True
    await asyncio.wait_for(task, 5)
    assert seen == ["hello", "no-newline"]

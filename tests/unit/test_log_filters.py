"""`logs --since` and `--timestamps` on the agent (nodeagent.pods.logs.lines): only lines written
at or after the time, the tail taken after that, each line with the time the node wrote it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from nodeagent.pods.logs import lines

LOG = (
    "2026-01-01T10:00:00.000000001Z stdout F first\n"
    "2026-01-01T10:00:05.500000000Z stdout F second\n"
    "2026-01-01T10:00:09.000000000Z stderr P thi\n"
    "2026-01-01T10:00:09.100000000Z stderr F rd\n"
)


async def _read(path: Path, **options: object) -> str:
    chunks = [c async for c in lines(path, follow=False, finished=lambda: True, **options)]  # type: ignore[arg-type]
    return b"".join(chunks).decode()


async def test_since_tail_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text(LOG)
    assert await _read(path, tail_lines=-1) == "first\nsecond\nthird\n"
    since = datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    assert await _read(path, tail_lines=-1, since=since) == "second\nthird\n"
    assert await _read(path, tail_lines=1, since=since) == "third\n"
    stamped = await _read(path, tail_lines=2, timestamps=True)
    assert stamped == "2026-01-01T10:00:05.500000Z second\n2026-01-01T10:00:09.100000Z third\n"

"""The small files a container's bundle keeps, written and read back by the runc runtime.

`meta.json` and `final.json` are JSON objects replaced atomically (write a temporary file,
then rename); `started` holds an ISO time; pid and exit-code files hold one integer.

Invariants: a reader never sees half a JSON file; a missing or unreadable time or integer
file reads as "not known" (None or the caller's default), never as an error; a stopped
container's state survives a round trip through `final.json` unchanged.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from nodeagent.runtime import ContainerState, Status


def read_int(path: Path, default: int | None = 0) -> Any:
    """The integer in a pid or exit-code file; `default` if it is missing or not a number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return default


def read_time(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` whole, readable by root only (a bundle's records hold env and labels)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data))
    os.replace(tmp, path)


def final_to_json(s: ContainerState) -> dict[str, Any]:
    """A stopped container's state as `final.json` keeps it."""
    return {
        "id": s.id,
        "exit_code": s.exit_code,
        "oom_killed": s.oom_killed,
        "started_at": s.started_at.isoformat() if s.started_at else None,
        "finished_at": s.finished_at.isoformat() if s.finished_at else None,
        "labels": s.labels,
    }


def final_from_json(d: dict[str, Any]) -> ContainerState:
    def when(key: str) -> datetime | None:
        return datetime.fromisoformat(d[key]) if d.get(key) else None

    return ContainerState(
        id=d["id"],
        status=Status.STOPPED,
        exit_code=d.get("exit_code"),
        oom_killed=bool(d.get("oom_killed")),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        labels=d.get("labels", {}),
    )

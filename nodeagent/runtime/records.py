"""The small files a container's bundle keeps, written and read back by the runc runtime.

`meta.json` and `final.json` are JSON objects replaced atomically (write a temporary file,
then rename); `started` holds an ISO time; pid and exit-code files hold one integer.

`meta.json` is also kept, as one annotation (`META_ANNOTATION`), in the bundle's `config.json`,
which runc copies into its own state: an unreadable `meta.json` is rebuilt from either
(`meta_from_config`, `meta_from_runc_state`).

Invariants: a reader never sees half a JSON file; a missing or unreadable time or integer
file reads as "not known" (None or the caller's default), never as an error; a stopped
container's state survives a round trip through `final.json` unchanged; the rebuilders
return a record only if it is a whole one (never a guess), else None.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from nodeagent.runtime import ContainerState, Status
from nodeagent.state.quarantine import quarantine


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


META_ANNOTATION = "io.pilothouse.runtime.meta"
META_KEYS = ("id", "labels", "log_path", "cgroups_path", "uuid")


def meta_annotations(meta: dict[str, Any]) -> dict[str, str]:
    """The OCI annotations that keep a copy of `meta` in config.json."""
    return {META_ANNOTATION: json.dumps(meta, sort_keys=True)}


def meta_from_config(path: Path) -> dict[str, Any] | None:
    """The meta record kept in a bundle's config.json, if it is there and whole."""
    try:
        config = json.loads(path.read_text())
        return _whole_meta(config["annotations"][META_ANNOTATION])
    except (OSError, ValueError, LookupError, TypeError):
        return None


def meta_from_runc_state(path: Path) -> dict[str, Any] | None:
    """The meta record in runc's own state.json (runc keeps annotations as "key=value" labels)."""
    try:
        labels = json.loads(path.read_text())["config"]["labels"]
        for label in labels:
            key, _, value = label.partition("=")
            if key == META_ANNOTATION:
                return _whole_meta(value)
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return None
    return None


def _whole_meta(text: str) -> dict[str, Any] | None:
    meta = json.loads(text)
    if not isinstance(meta, dict) or any(k not in meta for k in META_KEYS):
        return None
    return meta


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


def read_final(path: Path) -> ContainerState | None:
    """The state kept in `final.json`; None if there is none (an unreadable one is
    quarantined: the caller reads the exit file again and writes a new one)."""
    try:
        return final_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
        quarantine(path, error=exc, instead="the exit is read again from the exit file")
        return None


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

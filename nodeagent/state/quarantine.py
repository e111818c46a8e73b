"""Quarantine: an unreadable state file is moved aside, said so once, and the agent goes on.

Role: every loader of the agent's own files (the desired set, a container's records, image
records, CNI attachments, the instance id, the pod CIDR) calls `quarantine` when a file cannot
be parsed, instead of raising into start-up. The file is renamed to
`<name>.corrupt-<UTC time>` beside itself, so a person can inspect it and nothing reads it
again; the caller then carries on as if the file were missing, or rebuilds it from another
record.

Invariants:
- a quarantined file is never deleted or overwritten here (two quarantines of one name in the
  same second get distinct names);
- quarantining never raises: a file that cannot even be renamed is reported and left in place
  (the caller still treats its content as unknown);
- one error-level log line per quarantined file (`state.quarantined`), naming the file, where
  it went, why it was unreadable and what the agent does instead.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SUFFIX = ".corrupt-"


def quarantine(path: Path, *, error: object, instead: str) -> Path | None:
    """Move the unreadable `path` aside; returns where it went (None if it could not move).

    `error` is why it could not be read; `instead` says what the agent does without it."""
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{SUFFIX}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{SUFFIX}{stamp}.{n}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None  # gone meanwhile: nothing to keep
    except OSError as exc:
        log.error(
            "state.quarantine_failed",
            path=str(path),
            error=str(error),
            rename_error=str(exc),
            instead=instead,
        )
        return None
    log.error(
        "state.quarantined",
        path=str(path),
        moved_to=str(target),
        error=str(error),
        instead=instead,
    )
    return target


def read_json(path: Path, *, instead: str) -> Any:
    """The JSON value in `path`; None if there is no such file, or if it cannot be read
    (then it is quarantined, with `instead` saying what the agent does without it)."""
    try:
        return json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        quarantine(path, error=exc, instead=instead)
        return None


def quarantined(path: Path) -> list[Path]:
    """The quarantined copies of `path` (for tests and for people)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.name}{SUFFIX}*"))

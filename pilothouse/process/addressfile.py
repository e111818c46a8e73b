"""Address files: where a running process says it serves, as one line "HOST:PORT\n".

A process writes its file only once it serves (port 0 resolved to the port bound) and removes
it on the way out; whoever started it waits for the file instead of parsing logs.

Invariant: a reader never sees half a line: `write` puts the text in a temporary file beside
it and renames it over the old one, and `read` returns "" until a whole line is there.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def write(path: Path, address: str) -> None:
    """Publish `address` at `path`, atomically."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(address + "\n")
    temporary.replace(path)


def read(path: Path) -> str:
    """The address at `path`, or "" while there is none (not written yet, or removed)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    return text.strip() if text.endswith("\n") else ""


def remove(*paths: Path) -> None:
    """Withdraw the addresses (a file already gone is fine)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

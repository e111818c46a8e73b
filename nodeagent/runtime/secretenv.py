"""Keeping a container's Secret-derived environment off the node's disk.

`runc create` reads the process environment from the bundle's `config.json`, which lives on
disk. For a spec whose `secret_env` names variables whose values came from Secrets, the full
config is written to a memory-backed file (`MEMORY_DIR`, tmpfs) and the bundle's
`config.json` is a symlink to it while runc reads it; once the container exists, `config.json`
becomes a regular file without those variables and the memory copy is removed. What the
container sees is unchanged (its environment lives in its process's memory).

Invariant: no value of a `secret_env` variable is ever written under the bundle directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MEMORY_DIR = Path("/dev/shm")


def stage(bundle: Path, config: dict[str, Any], *, uuid: str) -> Path:
    """Write `config` to memory and point `bundle/config.json` at it; return the memory file."""
    memory = MEMORY_DIR / f"pilothouse-config-{uuid}.json"
    fd = os.open(memory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(config))
    link = bundle / "config.json"
    link.unlink(missing_ok=True)
    link.symlink_to(memory)
    return memory


def redacted(config: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """`config` without the environment variables `names` (the rest is kept as is)."""
    hidden = set(names)
    process = dict(config.get("process", {}))
    process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in hidden]
    return {**config, "process": process}


def forget(memory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        memory.unlink()

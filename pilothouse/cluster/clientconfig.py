"""The CLI's config file as `up` and `down` see it: `up` points `server:` at its control plane,
`down` takes it back out.

Which file: the one named explicitly, else `$PILOTHOUSE_CONFIG`, else
`~/.pilothouse/config.yaml`, the same file `pilothouse.config.resolve` reads.

Invariants: other keys in the file (namespace, credentials) are kept; the file is written
atomically with mode 0600; `forget` removes `server:` only while it still names the address
`up` wrote, so a person's own setting is never taken away; the file itself stays (the CLI
refuses a config file named by `$PILOTHOUSE_CONFIG` that does not exist).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pilothouse import config


def path(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit.expanduser()
    if env.get(config.CONFIG_ENV):
        return Path(env[config.CONFIG_ENV]).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".pilothouse" / "config.yaml"


def _load(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(file: Path, data: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(file.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(data, out, default_flow_style=False, sort_keys=False)
    temporary.replace(file)


def point_at(file: Path, server: str) -> None:
    """Make `server:` in `file` name `server`."""
    data = _load(file)
    data["server"] = server
    _save(file, data)


def forget(file: Path, server: str) -> bool:
    """Take `server:` out of `file` if it still names `server`; True if it did."""
    data = _load(file)
    if data.get("server") != server:
        return False
    del data["server"]
    _save(file, data)
    return True

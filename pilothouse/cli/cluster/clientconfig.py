"""The CLI's config file as `up` and `down` see it: `up` points `server:` at its control plane
(and, when the cluster is secure, `ca-cert:`, `client-cert:`, `client-key:` at the admin's
credentials), `down` takes them back out.

Which file: the one named explicitly, else `$PILOTHOUSE_CONFIG`, else
`~/.pilothouse/config.yaml`, the same file `pilothouse.config.resolve` reads.

Invariants: other keys in the file (namespace, credentials) are kept; the file is written
atomically with mode 0600; `forget` removes `server:` only while it still names the address
`up` wrote (and each credential key only while it still names what `up` wrote), so a person's
own setting is never taken away; the file itself stays (the CLI refuses a config file named by
`$PILOTHOUSE_CONFIG` that does not exist).
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


CREDENTIAL_KEYS = ("ca-cert", "client-cert", "client-key")


def point_at(file: Path, server: str, settings: Mapping[str, str] | None = None) -> None:
    """Make `server:` in `file` name `server`, and set the credential `settings` (without
    them: plaintext, so credential keys left from an earlier cluster are dropped)."""
    data = _load(file)
    data["server"] = server
    for key in CREDENTIAL_KEYS:
        data.pop(key, None)
    data.update(settings or {})
    _save(file, data)


def forget(file: Path, server: str, settings: Mapping[str, str] | None = None) -> bool:
    """Take `server:` out of `file` if it still names `server`, with the credential
    `settings` that still hold what `up` wrote; True if it did."""
    data = _load(file)
    if data.get("server") != server:
        return False
    del data["server"]
    for key, value in (settings or {}).items():
        if data.get(key) == value:
            del data[key]
    _save(file, data)
    return True

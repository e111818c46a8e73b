"""Where the CLI finds its control plane: flag, environment, config file, default.

Invariant: one precedence, applied in one place (`resolve`): `--server`, then the
`PILOTHOUSE_SERVER` environment variable, then `server:` in the config file (`--config`, else
`PILOTHOUSE_CONFIG`, else `~/.pilothouse/config.yaml`), then `DEFAULT_SERVER`. A missing default
config file is normal; a config file named explicitly must exist. A malformed file is a
`ConfigError` naming the file and the problem. The result records where the address came from,
so error messages can say which setting to fix.

Credentials come only from the config file: `ca-cert`, `client-cert` and `client-key` are paths
(relative ones are taken from the file's own directory). `pilothouse controlplane` writes such a
file with the admin's credentials as `<data-dir>/admin.conf` (mode 0600) and prints its path;
point the CLI at it with `--config` or `PILOTHOUSE_CONFIG` (it names its certificates relative
to itself, so it is used in place; a copy elsewhere needs absolute paths). A file without
`ca-cert` means plaintext, for a control plane run with `--insecure`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The control plane's default listen port is 7070 (controlplane/config.py documents it); this
# package may not import the control plane, so the value is repeated here on purpose.
DEFAULT_SERVER = "127.0.0.1:7070"

SERVER_ENV = "PILOTHOUSE_SERVER"
CONFIG_ENV = "PILOTHOUSE_CONFIG"
DEFAULT_CONFIG_PATH = Path("~/.pilothouse/config.yaml")

# Keys a config file may hold (the TLS ones are paths; see the module docstring).
_KNOWN_KEYS = frozenset({"server", "namespace", "ca-cert", "client-cert", "client-key"})


class ConfigError(ValueError):
    """A config file that cannot be read or does not have the expected shape."""


class Source(enum.Enum):
    FLAG = "--server"
    ENVIRONMENT = SERVER_ENV
    FILE = "config file"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Config:
    server: str
    source: Source
    # The config file that was read, if any.
    path: Path | None = None
    namespace: str | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


def resolve(
    *,
    server: str | None = None,
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The effective configuration for one CLI invocation."""
    env = os.environ if environ is None else environ
    explicit = config_path or env.get(CONFIG_ENV) or None
    path = Path(explicit).expanduser() if explicit else _home_config(env)
    settings = _read(path, required=explicit is not None)
    file_fields = _file_fields(settings, path)
    if server:
        return Config(server=server, source=Source.FLAG, **file_fields)
    if env.get(SERVER_ENV):
        return Config(server=env[SERVER_ENV], source=Source.ENVIRONMENT, **file_fields)
    if settings.get("server"):
        return Config(server=str(settings["server"]), source=Source.FILE, **file_fields)
    return Config(server=DEFAULT_SERVER, source=Source.DEFAULT, **file_fields)


def _home_config(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    if home:
        return Path(home) / ".pilothouse" / "config.yaml"
    return DEFAULT_CONFIG_PATH.expanduser()


def _read(path: Path, *, required: bool) -> dict[str, object]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import yaml  # only with a file to read: a command run without one needs no YAML

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with a `server:` key")
    unknown = sorted(str(k) for k in data if k not in _KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(_KNOWN_KEYS))
        raise ConfigError(f"config file {path}: unknown key {unknown[0]!r} (known: {known})")
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
    return data


def _file_fields(settings: Mapping[str, object], path: Path) -> dict[str, object]:
    def as_path(key: str) -> Path | None:
        value = settings.get(key)
        if not value:
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else path.parent / candidate

    return {
        "path": path if settings else None,
        "namespace": str(settings["namespace"]) if settings.get("namespace") else None,
        "ca_cert": as_path("ca-cert"),
        "client_cert": as_path("client-cert"),
        "client_key": as_path("client-key"),
    }

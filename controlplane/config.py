"""The control plane's settings: command-line flags, their defaults, and the files it writes.

Defaults:
- `--listen 127.0.0.1:7070`: the gRPC API address. 7070 is not kube-apiserver's 6443, so a
  Pilothouse control plane and a Kubernetes one can share a machine. Port 0 picks a free port;
  the address actually bound is written to `<data-dir>/controlplane.addr`.
- `--data-dir ~/.local/share/pilothouse/controlplane` (or `$PILOTHOUSE_DATA_DIR`): holds the
  embedded etcd (`etcd/`) and `controlplane.addr`.
- `--etcd URL,...`: use that etcd cluster instead of starting one.
- `--registries FILE`: the registries.yaml the agents use (mirrors, credentials); with it, new
  revisions pin image tags to digests. Without it tags are not resolved (no registry lookups).

Invariant: `controlplane.addr` holds exactly one line, "HOST:PORT", written only once the API
serves and removed on a clean stop, so a tool that reads it can connect right away.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 7070
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
ADDRESS_FILE = "controlplane.addr"
ETCD_DIR = "etcd"


class ConfigError(ValueError):
    """A flag with a value the control plane cannot use."""


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path
    listen: str
    etcd_endpoints: tuple[str, ...]  # empty: start an embedded etcd under data_dir/etcd
    debug: bool
    registries: Path | None = None  # registries.yaml: pin image tags to digests in revisions

    @property
    def address_file(self) -> Path:
        return self.data_dir / ADDRESS_FILE

    @property
    def etcd_dir(self) -> Path:
        return self.data_dir / ETCD_DIR


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("PILOTHOUSE_DATA_DIR"):
        return Path(env["PILOTHOUSE_DATA_DIR"])
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pilothouse" / "controlplane"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilothouse controlplane",
        description="Run the Pilothouse control plane (gRPC API over etcd).",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="state directory (embedded etcd, address file); default: %(default)s "
        "→ $PILOTHOUSE_DATA_DIR or ~/.local/share/pilothouse/controlplane",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="gRPC API address HOST:PORT (port 0: any free port); default %(default)s",
    )
    p.add_argument(
        "--etcd",
        default="",
        help="comma-separated etcd client URLs; default: start an embedded etcd",
    )
    p.add_argument(
        "--registries",
        type=Path,
        default=None,
        help="registries.yaml (as the agents'): pin image tags to digests in new revisions; "
        "default: tags are not resolved",
    )
    p.add_argument("--debug", action="store_true", help="debug logging")
    return p


def parse(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> Config:
    """Parse flags (argparse exits with status 2 on unknown flags, as every CLI does)."""
    args = parser().parse_args(list(argv))
    listen = args.listen.strip()
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    endpoints = tuple(url.strip() for url in args.etcd.split(",") if url.strip())
    data_dir = (args.data_dir or default_data_dir(env)).expanduser().resolve()
    registries = args.registries.expanduser().resolve() if args.registries else None
    if registries is not None and not registries.is_file():
        raise ConfigError(f"--registries {str(registries)!r}: no such file")
    return Config(
        data_dir=data_dir,
        listen=listen,
        etcd_endpoints=endpoints,
        debug=args.debug,
        registries=registries,
    )

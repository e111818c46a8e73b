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
- Security is on by default (issue #7): the API port requires a client certificate signed by
  the cluster CA (mutual TLS); `--join-listen` (default: the API port + 1, or any free port
  when the API port is 0) is a TLS port without client certificates where nodes join with a
  bootstrap token. On first start the CA, the serving certificate, the control plane's own
  client certificate (for calling agents) and the admin's are made under `<data-dir>/pki/`,
  and `<data-dir>/admin.conf` (mode 0600) is the CLI config with the admin's credentials.
  `--tls-san` adds names/IPs the serving certificate is valid for (clients verify the name
  `pilothouse-controlplane` anyway, so this is only for other TLS clients). `--insecure`
  serves plaintext with no authentication at all: for development only.

Invariant: `controlplane.addr` holds exactly one line, "HOST:PORT", written only once the API
serves and removed on a clean stop, so a tool that reads it can connect right away. When
secure, `join.addr` holds the join port's "HOST:PORT" likewise, and `admin.conf` exists before
`controlplane.addr` does.
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
JOIN_ADDRESS_FILE = "join.addr"
ADMIN_CONFIG_FILE = "admin.conf"
PKI_DIR = "pki"
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
    insecure: bool = False  # plaintext, no authentication (development only)
    join_listen: str = ""  # empty: the API port + 1 (see controlplane.auth.serving)
    tls_sans: tuple[str, ...] = ()

    @property
    def address_file(self) -> Path:
        return self.data_dir / ADDRESS_FILE

    @property
    def join_address_file(self) -> Path:
        return self.data_dir / JOIN_ADDRESS_FILE

    @property
    def admin_config(self) -> Path:
        return self.data_dir / ADMIN_CONFIG_FILE

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / PKI_DIR

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
        help="state directory (embedded etcd, pki/, admin.conf, address files); default: "
        "$PILOTHOUSE_DATA_DIR or ~/.local/share/pilothouse/controlplane",
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
    p.add_argument(
        "--join-listen",
        default="",
        metavar="HOST:PORT",
        help="TLS port (no client certificate) where nodes join with a token; default: the "
        "API port + 1 on the same host",
    )
    p.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP for the serving certificate (repeatable or comma-separated), "
        "e.g. the VM's address",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="DEVELOPMENT ONLY: serve plaintext gRPC with no authentication (anyone who can "
        "reach the port controls the cluster); agents then need --insecure too",
    )
    p.add_argument("--debug", action="store_true", help="debug logging")
    return p


def parse(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> Config:
    """Parse flags (argparse exits with status 2 on unknown flags, as every CLI does)."""
    args = parser().parse_args(list(argv))
    listen = args.listen.strip()
    _check_address("--listen", listen)
    endpoints = tuple(url.strip() for url in args.etcd.split(",") if url.strip())
    data_dir = (args.data_dir or default_data_dir(env)).expanduser().resolve()
    registries = args.registries.expanduser().resolve() if args.registries else None
    if registries is not None and not registries.is_file():
        raise ConfigError(f"--registries {str(registries)!r}: no such file")
    join_listen = args.join_listen.strip()
    if join_listen:
        if args.insecure:
            raise ConfigError("--join-listen has no use with --insecure (nothing to join)")
        _check_address("--join-listen", join_listen)
        if join_listen == listen and not listen.endswith(":0"):
            raise ConfigError("--join-listen must differ from --listen")
    sans = tuple(name.strip() for flag in args.tls_san for name in flag.split(",") if name.strip())
    return Config(
        data_dir=data_dir,
        listen=listen,
        etcd_endpoints=endpoints,
        debug=args.debug,
        registries=registries,
        insecure=args.insecure,
        join_listen=join_listen,
        tls_sans=sans,
    )


def _check_address(flag: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{flag} {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")

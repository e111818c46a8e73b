"""The control plane's settings: command-line flags, their defaults, and the files it writes.

Defaults:
- `--listen 127.0.0.1:7070`: the gRPC API address. 7070 is not kube-apiserver's 6443, so a
  Pilothouse control plane and a Kubernetes one can share a machine. Port 0 picks a free port;
  the address actually bound is written to `<data-dir>/controlplane.addr`.
- `--data-dir ~/.local/share/pilothouse/controlplane` (or `$PILOTHOUSE_DATA_DIR`): holds the
  embedded etcd (`etcd/`) and `controlplane.addr`.
- `--etcd URL,...`: use that etcd cluster instead of starting one. `https://` URLs take
  `--etcd-cafile` (the CA that signed etcd's serving certificate) and, for an etcd run with
  `--client-cert-auth` (as it should be), `--etcd-certfile`/`--etcd-keyfile` (the control
  plane's client certificate); kube-apiserver's flag names. `http://` URLs are plaintext and
  take none of them (a warning is logged: whoever reaches that etcd controls the cluster).
- The embedded etcd (no `--etcd`) speaks only mutual TLS on loopback, with a CA of its own
  under `<data-dir>/pki/etcd/` (see `controlplane.store.tls`), no HTTP gateway. With
  `--insecure` it is plaintext on loopback, like the API.
- `--reserved-host-ports PORT,…` and `--min-host-port PORT`: hostPorts a pod may not ask for,
  besides the cluster's own ports, which are always refused (`controlplane.api.hostports`).
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
- Admin decisions, off by default (issue 11): `--allow-probe-host` accepts probes and preStop
  hooks whose `host` points outside their pod, `--allow-unconfined-seccomp` accepts pods that
  ask for `seccompProfile: Unconfined`; otherwise apply refuses them (Forbidden, with the
  field). The agents have flags of the same names; set both alike.

Invariant: `controlplane.addr` holds exactly one line, "HOST:PORT", written only once the API
serves and removed on a clean stop, so a tool that reads it can connect right away. When
secure, `join.addr` holds the join port's "HOST:PORT" likewise, and `admin.conf` exists before
`controlplane.addr` does.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.manifests.validation.policy import ClusterPolicy

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
class EtcdClientFiles:
    """How the control plane dials an external etcd over TLS (PEM files)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


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
    etcd_tls: EtcdClientFiles | None = None  # --etcd-cafile/--etcd-certfile/--etcd-keyfile
    node_rejoin_grace: float = 300.0  # --node-rejoin-grace (controlplane.auth.admission)
    # --allow-probe-host, --allow-unconfined-seccomp: what apply accepts beyond the syntax.
    policy: ClusterPolicy = field(default_factory=ClusterPolicy)

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

    @property
    def etcd_pki_dir(self) -> Path:
        return self.pki_dir / "etcd"


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
        help="comma-separated etcd client URLs (https://HOST:2379,…); default: start an "
        "embedded etcd (mutual TLS on loopback; plaintext with --insecure)",
    )
    p.add_argument(
        "--etcd-cafile",
        type=Path,
        default=None,
        metavar="FILE",
        help="with https:// --etcd URLs: the CA certificate that signed etcd's certificate",
    )
    p.add_argument(
        "--etcd-certfile",
        type=Path,
        default=None,
        metavar="FILE",
        help="with https:// --etcd URLs: the control plane's client certificate for etcd",
    )
    p.add_argument(
        "--etcd-keyfile",
        type=Path,
        default=None,
        metavar="FILE",
        help="the key of --etcd-certfile",
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
        "--node-rejoin-grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="a join token may take over the name of a node only after it has been NotReady "
        "this long (default %(default)g s); sooner only with `pilothouse node approve`",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="DEVELOPMENT ONLY: serve plaintext gRPC with no authentication (anyone who can "
        "reach the port controls the cluster), and run the embedded etcd in plaintext on "
        "loopback (any local user can read and write it); agents then need --insecure too",
    )
    p.add_argument(
        "--allow-probe-host",
        action="store_true",
        help="accept probes and preStop hooks whose host is outside their pod (an admin's "
        "decision; the nodes need the same flag)",
    )
    p.add_argument(
        "--allow-unconfined-seccomp",
        action="store_true",
        help="accept pods asking for seccompProfile: Unconfined (the nodes need the same flag)",
    )
    p.add_argument(
        "--allow-privileged",
        action="store_true",
        help="accept privileged containers (securityContext.privileged; the nodes need the "
        "same flag)",
    )
    p.add_argument(
        "--reserved-host-ports",
        default="",
        metavar="PORT,…",
        help="more host ports no pod may take (besides the API's, the join port's, etcd's, "
        "every node agent's and the defaults 2379,2380,5000,7070,7071,7080)",
    )
    p.add_argument(
        "--min-host-port",
        type=int,
        default=1,
        metavar="PORT",
        help="refuse hostPorts below this (default %(default)s: any)",
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
    etcd_tls = _etcd_tls(args, endpoints)
    return Config(
        data_dir=data_dir,
        listen=listen,
        etcd_endpoints=endpoints,
        debug=args.debug,
        registries=registries,
        insecure=args.insecure,
        policy=ClusterPolicy(
            allow_probe_host=args.allow_probe_host,
            allow_unconfined_seccomp=args.allow_unconfined_seccomp,
            allow_privileged=args.allow_privileged,
            reserved_host_ports=_ports("--reserved-host-ports", args.reserved_host_ports),
            min_host_port=_port_floor(args.min_host_port),
        ),
        join_listen=join_listen,
        tls_sans=sans,
        etcd_tls=etcd_tls,
        node_rejoin_grace=_nonnegative("--node-rejoin-grace", args.node_rejoin_grace),
    )


def _ports(flag: str, text: str) -> frozenset[int]:
    ports = set()
    for word in text.replace(" ", ",").split(","):
        if not word:
            continue
        if not word.isdigit() or not 0 < int(word) < 65536:
            raise ConfigError(f"{flag}: {word!r} is not a port number (1-65535)")
        ports.add(int(word))
    return frozenset(ports)


def _port_floor(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"--min-host-port must be a port number (1-65535), got {value}")
    return value


def _nonnegative(flag: str, value: float) -> float:
    if value < 0:
        raise ConfigError(f"{flag} must not be negative, got {value:g}")
    return value


def _etcd_tls(args: argparse.Namespace, endpoints: tuple[str, ...]) -> EtcdClientFiles | None:
    """The external etcd's TLS files, checked against the URLs' schemes."""
    given = [
        flag
        for flag, value in (
            ("--etcd-cafile", args.etcd_cafile),
            ("--etcd-certfile", args.etcd_certfile),
            ("--etcd-keyfile", args.etcd_keyfile),
        )
        if value is not None
    ]
    if not endpoints:
        if given:
            raise ConfigError(f"{given[0]} needs --etcd (the embedded etcd has its own PKI)")
        return None
    plain = any(not url.startswith("https://") for url in endpoints)
    if plain and any(url.startswith("https://") for url in endpoints):
        raise ConfigError("--etcd mixes https:// and http:// URLs; use one scheme for all")
    if not plain:
        if args.etcd_cafile is None:
            raise ConfigError(
                "https:// --etcd URLs need --etcd-cafile (the CA that signed etcd's certificate)"
            )
        if (args.etcd_certfile is None) != (args.etcd_keyfile is None):
            raise ConfigError("--etcd-certfile and --etcd-keyfile go together")
        files = EtcdClientFiles(
            ca_file=args.etcd_cafile.expanduser().resolve(),
            cert_file=args.etcd_certfile.expanduser().resolve() if args.etcd_certfile else None,
            key_file=args.etcd_keyfile.expanduser().resolve() if args.etcd_keyfile else None,
        )
        for path in (files.ca_file, files.cert_file, files.key_file):
            if path is not None and not path.is_file():
                raise ConfigError(f"etcd TLS file {str(path)!r}: no such file")
        return files
    if given:
        raise ConfigError(f"{given[0]} needs https:// --etcd URLs, not http://")
    return None


def _check_address(flag: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{flag} {value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")

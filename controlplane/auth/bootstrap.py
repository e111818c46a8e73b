"""The control plane's PKI files under `<data-dir>/pki/`, made on first start, kept fresh after.

Files (keys 0600, certificates 0644):
- `ca.crt`, `ca.key`: the cluster CA; made once and never replaced (replacing it would cut
  every joined node off).
- `server.crt`, `server.key`: the serving certificate; reissued when missing, not from this CA,
  past two thirds of its life, or lacking a host it must name.
- `controlplane-client.crt`, `.key`: the identity the control plane shows to agents.
- `admin.crt`, `admin.key`, and `<data-dir>/admin.conf`: the admin's credentials and a CLI
  config file (mode 0600) pointing at them.

Invariant: `ensure` is idempotent and safe to run on every start; it only writes what is
missing or due, each file atomically.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509

from pilothouse import credentials, pki

log = structlog.get_logger(__name__)

ADMIN_CONFIG = "admin.conf"


@dataclass(frozen=True, slots=True)
class ClusterPki:
    directory: Path
    ca: pki.Issued
    serving: pki.Issued
    controlplane_client: pki.Issued

    @property
    def ca_cert_hash(self) -> str:
        return pki.ca_cert_hash(self.ca.cert_pem)

    def server_credentials(self, *, require_client_cert: bool) -> object:
        """grpc.ServerCredentials for the API port (True) or the join port (False)."""
        return credentials.server_credentials(
            cert_pem=self.serving.cert_pem,
            key_pem=self.serving.key_pem,
            ca_pem=self.ca.cert_pem,
            require_client_cert=require_client_cert,
        )

    def agent_client(self) -> credentials.TlsMaterial:
        """What the control plane dials agents with (verify the node name as the target)."""
        return credentials.TlsMaterial(
            ca_pem=self.ca.cert_pem,
            cert_pem=self.controlplane_client.cert_pem,
            key_pem=self.controlplane_client.key_pem,
        )

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.crt"


def serving_hosts(listen: str, extra: Sequence[str] = ()) -> list[str]:
    """The hosts the serving certificate names: the listen host unless it is a wildcard, and
    the extra names/IPs (`--tls-san`)."""
    host = listen.rpartition(":")[0].strip("[]")
    hosts = list(extra)
    try:
        if host and not ipaddress.ip_address(host).is_unspecified:
            hosts.append(host)
    except ValueError:
        if host:
            hosts.append(host)
    return hosts


def ensure(
    directory: Path, *, hosts: Sequence[str] = (), now: datetime.datetime | None = None
) -> ClusterPki:
    now = now or pki.utcnow()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _load(directory, "ca")
    if ca is None:
        ca = pki.create_ca(now=now)
        _save(directory, "ca", ca)
        log.info("pki.ca_created", ca_cert_hash=pki.ca_cert_hash(ca.cert_pem))

    serving = _load(directory, "server")
    wanted = pki.subject_alt_names(["localhost", "127.0.0.1", pki.SERVER_NAME, *hosts])
    if serving is None or _due(serving, ca, now) or not _names_all(serving.cert, wanted):
        serving = pki.issue_serving(ca, hosts=hosts, now=now)
        _save(directory, "server", serving)
        log.info("pki.serving_issued", hosts=",".join(hosts))

    client = _load(directory, "controlplane-client")
    if client is None or _due(client, ca, now):
        client = pki.issue_client(ca, pki.CONTROLPLANE, now=now)
        _save(directory, "controlplane-client", client)
    return ClusterPki(directory=directory, ca=ca, serving=serving, controlplane_client=client)


def ensure_admin_config(
    cluster: ClusterPki, *, path: Path, server: str, now: datetime.datetime | None = None
) -> Path:
    """Issue (or keep) the admin certificate and write the CLI config file at `path`."""
    now = now or pki.utcnow()
    admin = _load(cluster.directory, "admin")
    if admin is None or _due(admin, cluster.ca, now):
        admin = pki.issue_client(cluster.ca, pki.ADMIN, now=now)
        _save(cluster.directory, "admin", admin)
    credentials.write_client_config(
        path,
        server=server,
        ca_cert=cluster.directory / "ca.crt",
        client_cert=cluster.directory / "admin.crt",
        client_key=cluster.directory / "admin.key",
    )
    return path


def _load(directory: Path, name: str) -> pki.Issued | None:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    if not cert_path.exists() or not key_path.exists():
        return None
    cert = pki.load_cert(cert_path.read_bytes())
    key = pki.load_key(key_path.read_bytes())
    if cert.public_key() != key.public_key():
        log.warning("pki.mismatched_key", file=str(cert_path))
        return None
    return pki.Issued(cert=cert, key=key)


def _save(directory: Path, name: str, issued: pki.Issued) -> None:
    # Key first: a crash between the two leaves a mismatched pair, which `_load` reissues.
    pki.write_key(directory / f"{name}.key", issued.key_pem)
    pki.write_cert(directory / f"{name}.crt", issued.cert_pem)


def _due(issued: pki.Issued, ca: pki.Issued, now: datetime.datetime) -> bool:
    return not pki.verify_issued_by(issued.cert, ca.cert) or pki.needs_renewal(issued.cert, now)


def _names_all(cert: x509.Certificate, wanted: list[x509.GeneralName]) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not wanted
    return all(name in sans for name in wanted)

"""The embedded etcd's PKI: a CA of its own and the certificates etcd and its one client use.

Files under `directory` (kubeadm's `pki/etcd/` layout; keys 0600, the directory 0700):
- `ca.crt`, `ca.key`: the etcd CA. It is NOT the cluster CA on purpose: etcd's
  `--client-cert-auth` admits any certificate its trusted CA signed, and the cluster CA signs
  every joined node's certificate, so with one CA any node could read and write the store.
- `server.crt`, `server.key`: etcd's client-port certificate (serverAuth for `hosts`).
- `peer.crt`, `peer.key`: for the peer port, server and client at once (members dial each
  other with it; `--peer-client-cert-auth`).
- `client.crt`, `client.key`: the control plane's own identity towards etcd, the only client
  certificate this CA issues.

Invariants: pure file and certificate work (no sockets, no gRPC); `ensure` is idempotent and
safe on every start: the CA is made once and kept, the others are reissued when missing, not
from this CA, past two thirds of their life, or (server, peer) lacking a host they must name.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509

from pilothouse import pki

log = structlog.get_logger(__name__)

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
SERVER = pki.Identity(user="pilothouse-etcd", groups=("system:etcd",))
CLIENT = pki.Identity(user="pilothouse-controlplane-etcd-client", groups=("system:etcd-clients",))


@dataclass(frozen=True, slots=True)
class EtcdPki:
    """Paths of the embedded etcd's certificates and keys (see the module docstring)."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    @property
    def server_cert(self) -> Path:
        return self.path("server.crt")

    @property
    def server_key(self) -> Path:
        return self.path("server.key")

    @property
    def peer_cert(self) -> Path:
        return self.path("peer.crt")

    @property
    def peer_key(self) -> Path:
        return self.path("peer.key")

    @property
    def client_cert(self) -> Path:
        return self.path("client.crt")

    @property
    def client_key(self) -> Path:
        return self.path("client.key")

    def client_pems(self) -> tuple[bytes, bytes, bytes]:
        """(CA, client certificate, client key) as PEM, for the store's channel."""
        return (
            self.ca_cert.read_bytes(),
            self.client_cert.read_bytes(),
            self.client_key.read_bytes(),
        )


def ensure(
    directory: Path, *, hosts: Sequence[str] = DEFAULT_HOSTS, now: datetime.datetime | None = None
) -> EtcdPki:
    """Make or refresh the etcd PKI under `directory` (see the module docstring)."""
    now = now or pki.utcnow()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _load(directory, "ca")
    if ca is None:
        ca = pki.create_ca(common_name="pilothouse-etcd-ca", now=now)
        _save(directory, "ca", ca)
        log.info("etcd.ca_created", directory=str(directory))
    wanted = pki.subject_alt_names(list(hosts))
    for name, identity, server in (
        ("server", SERVER, True),
        ("peer", SERVER, True),
        ("client", CLIENT, False),
    ):
        current = _load(directory, name)
        if current is None or _due(current, ca, now) or (server and not _names(current, wanted)):
            issued = pki.issue_for(
                ca, identity, hosts=hosts if server else (), server=server, client=True, now=now
            )
            _save(directory, name, issued)
            log.info("etcd.cert_issued", cert=name)
    return EtcdPki(directory=directory)


def _load(directory: Path, name: str) -> pki.Issued | None:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    if not cert_path.exists() or not key_path.exists():
        return None
    try:
        cert = pki.load_cert(cert_path.read_bytes())
        key = pki.load_key(key_path.read_bytes())
    except pki.PkiError:
        return None
    if cert.public_key() != key.public_key():
        return None  # a crash between the two writes: issue again
    return pki.Issued(cert=cert, key=key)


def _save(directory: Path, name: str, issued: pki.Issued) -> None:
    pki.write_key(directory / f"{name}.key", issued.key_pem)
    pki.write_cert(directory / f"{name}.crt", issued.cert_pem)


def _due(issued: pki.Issued, ca: pki.Issued, now: datetime.datetime) -> bool:
    return not pki.verify_issued_by(issued.cert, ca.cert) or pki.needs_renewal(issued.cert, now)


def _names(issued: pki.Issued, wanted: list[x509.GeneralName]) -> bool:
    try:
        sans = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not wanted
    return all(name in sans for name in wanted)

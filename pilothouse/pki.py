"""The cluster PKI: one CA, the certificates it issues, and who a certificate says you are.

Vocabulary:
- CA: the cluster's self-signed ECDSA P-256 certificate authority (`ca.crt`, `ca.key`).
- serving certificate: the control plane's TLS server certificate. Besides the hosts given, its
  SANs always hold `localhost`, `127.0.0.1` and `SERVER_NAME`, the name clients verify (they set
  it as the TLS target name), so one certificate works whatever address a node dials.
- client certificate: an identity. Its subject CN is the user, its O values are the groups:
  admin `CN=admin, O=system:masters`; node `CN=system:node:<name>, O=system:nodes`; the control
  plane calling agents `CN=pilothouse-controlplane, O=system:controlplane`.
- node certificate: a client certificate that also serves the node's agent (serverAuth with a
  DNS SAN equal to the node name, which the control plane verifies as the target name).
- CA hash: `sha256:<hex>` of the DER SubjectPublicKeyInfo of the CA, exactly kubeadm's
  `--discovery-token-ca-cert-hash`.

Invariants: everything here is pure data work (no sockets, no grpc); times come from the caller
(`now`) so tests can move the clock; private keys are only ever written with mode 0600.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "pilothouse-controlplane"
ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
CONTROLPLANE_USER = "pilothouse-controlplane"
CONTROLPLANE_GROUP = "system:controlplane"

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
CLIENT_VALIDITY = datetime.timedelta(days=365)
NODE_VALIDITY = datetime.timedelta(days=30)
# Tolerate clocks a little behind the CA's when a certificate is issued.
_BACKDATE = datetime.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class PkiError(ValueError):
    """A certificate, key or request that cannot be used as asked; the message says why."""


class Role(enum.Enum):
    ADMIN = "admin"
    NODE = "node"
    CONTROLPLANE = "controlplane"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified client certificate names."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def role(self) -> Role:
        if MASTERS_GROUP in self.groups:
            return Role.ADMIN
        if NODES_GROUP in self.groups and self.user.startswith(NODE_USER_PREFIX):
            return Role.NODE
        if CONTROLPLANE_GROUP in self.groups and self.user == CONTROLPLANE_USER:
            return Role.CONTROLPLANE
        return Role.OTHER

    @property
    def node_name(self) -> str | None:
        """The node this identity is, for a node certificate; otherwise None."""
        if self.role is Role.NODE:
            return self.user.removeprefix(NODE_USER_PREFIX)
        return None

    def __str__(self) -> str:
        groups = ",".join(self.groups)
        return f"{self.user} ({groups})" if groups else self.user

    @classmethod
    def of(cls, cert: x509.Certificate | x509.CertificateSigningRequest) -> Identity:
        subject = cert.subject
        names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        groups = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return cls(
            user=str(names[0].value) if names else "",
            groups=tuple(str(g.value) for g in groups),
        )


def node_identity(node_name: str) -> Identity:
    return Identity(user=NODE_USER_PREFIX + node_name, groups=(NODES_GROUP,))


ADMIN = Identity(user=ADMIN_USER, groups=(MASTERS_GROUP,))
CONTROLPLANE = Identity(user=CONTROLPLANE_USER, groups=(CONTROLPLANE_GROUP,))


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its private key (the CA itself is one too)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise PkiError(f"not a PEM certificate: {error}") from None


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise PkiError(f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("the private key is not an EC key")
    return key


def create_ca(
    *, common_name: str = "pilothouse-ca", now: datetime.datetime | None = None
) -> Issued:
    """A new self-signed CA, valid for ten years."""
    now = now or utcnow()
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def issue_serving(
    ca: Issued,
    *,
    hosts: Iterable[str] = (),
    now: datetime.datetime | None = None,
    valid_for: datetime.timedelta = SERVING_VALIDITY,
) -> Issued:
    """The control plane's certificate: serverAuth for `hosts` (names or IPs) plus localhost,
    127.0.0.1 and SERVER_NAME; also clientAuth as the control plane identity."""
    key = new_key()
    all_hosts = ["localhost", "127.0.0.1", SERVER_NAME, *hosts]
    cert = _issue(
        ca,
        public_key=key.public_key(),
        subject=_subject(CONTROLPLANE),
        sans=subject_alt_names(all_hosts),
        server=True,
        client=False,
        now=now or utcnow(),
        valid_for=valid_for,
    )
    return Issued(cert=cert, key=key)


def issue_client(
    ca: Issued,
    identity: Identity,
    *,
    now: datetime.datetime | None = None,
    valid_for: datetime.timedelta = CLIENT_VALIDITY,
) -> Issued:
    """A client certificate naming `identity` (admin, the control plane calling agents …)."""
    key = new_key()
    cert = _issue(
        ca,
        public_key=key.public_key(),
        subject=_subject(identity),
        sans=[],
        server=False,
        client=True,
        now=now or utcnow(),
        valid_for=valid_for,
    )
    return Issued(cert=cert, key=key)


def create_csr(key: ec.EllipticCurvePrivateKey, identity: Identity) -> bytes:
    """A PEM certificate signing request for `identity`, signed by `key`."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(identity))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_node_csr(
    ca: Issued,
    csr_pem: bytes,
    *,
    node_name: str,
    now: datetime.datetime | None = None,
    valid_for: datetime.timedelta = NODE_VALIDITY,
) -> x509.Certificate:
    """Sign a node's CSR. The subject is set by the CA (`system:node:<node_name>`,
    `system:nodes`) whatever the request asks for; the request must name that same identity
    and carry a valid self-signature, so nobody signs for a key they do not hold."""
    check_node_name(node_name)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise PkiError(f"the certificate signing request is not valid PEM: {error}") from None
    if not csr.is_signature_valid:
        raise PkiError("the certificate signing request's signature does not verify")
    asked = Identity.of(csr)
    wanted = node_identity(node_name)
    if asked != wanted:
        raise PkiError(
            f"the certificate signing request asks for {asked}, but a node named "
            f"{node_name!r} may only ask for {wanted}"
        )
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PkiError("the certificate signing request must carry an EC public key")
    return _issue(
        ca,
        public_key=public,
        subject=_subject(wanted),
        sans=[x509.DNSName(node_name)],
        server=True,
        client=True,
        now=now or utcnow(),
        valid_for=valid_for,
    )


def check_node_name(node_name: str) -> None:
    """A node name must be a DNS-1123 subdomain (it is a SAN) and not the control plane's."""
    if not node_name or len(node_name) > 253 or not _DNS_LABEL.match(node_name):
        raise PkiError(
            f"node name {node_name!r} is not a valid DNS-1123 subdomain "
            "(lower-case letters, digits, '-' and '.')"
        )
    if node_name == SERVER_NAME:
        raise PkiError(f"node name {node_name!r} is reserved for the control plane")


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether `ca_cert` signed `cert` (signature only; no validity or name checks)."""
    public = ca_cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    if cert.issuer != ca_cert.subject:
        return False
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def ca_cert_hash(pem: bytes) -> str:
    """`sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo (kubeadm's CA hash)."""
    spki = (
        load_cert(pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def check_hash_format(value: str) -> str:
    """Normalise a `--ca-cert-hash` value (lower case) or raise PkiError saying the format."""
    normal = value.strip().lower()
    if not _HASH.match(normal):
        raise PkiError(
            f"CA hash {value!r} is not of the form sha256:<64 hex digits> "
            "(`pilothouse token create` prints it)"
        )
    return normal


def not_after(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_after_utc


def needs_renewal(cert: x509.Certificate, now: datetime.datetime, fraction: float = 2 / 3) -> bool:
    """Whether `fraction` of the certificate's lifetime has passed (or it expired)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * fraction


def renewal_time(cert: x509.Certificate, fraction: float = 2 / 3) -> datetime.datetime:
    """When `needs_renewal` starts to say yes."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * fraction


def write_key(path: Path, pem: bytes) -> None:
    """Write a private key atomically, readable by its owner only (0600) from the start."""
    _write(path, pem, mode=0o600)


def write_cert(path: Path, pem: bytes) -> None:
    _write(path, pem, mode=0o644)


def write_secret(path: Path, data: bytes) -> None:
    """Any file holding credentials (an admin config): mode 0600, written atomically."""
    _write(path, data, mode=0o600)


def subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    seen: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip().strip("[]")
        if not host:
            continue
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        if name not in seen:
            seen.append(name)
    return seen


def _subject(identity: Identity) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in identity.groups]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
    return x509.Name(attributes)


def _issue(
    ca: Issued,
    *,
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    server: bool,
    client: bool,
    now: datetime.datetime,
    valid_for: datetime.timedelta,
) -> x509.Certificate:
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_public = ca.key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + valid_for, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _write(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # A stale temporary file from a crash is removed so O_CREAT applies the mode afresh.
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)

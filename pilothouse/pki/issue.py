"""The cluster CA and the certificates it issues: the control plane's serving certificate,
client certificates, and node certificates signed from a node's CSR.

Invariants: times come from the caller (`now`) so tests can move the clock; no certificate
outlives the CA; a node's certificate names exactly the node it was asked for, whatever its
request says, and only for a key the requester proved it holds.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilothouse.pki.identity import CONTROLPLANE, SERVER_NAME, Identity, node_identity
from pilothouse.pki.pem import Issued, PkiError, new_key

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
CLIENT_VALIDITY = datetime.timedelta(days=365)
NODE_VALIDITY = datetime.timedelta(days=30)
# Tolerate clocks a little behind the CA's when a certificate is issued: every certificate is
# valid from exactly this long before it was issued (`verify.issued_at` relies on it).
BACKDATE = datetime.timedelta(minutes=5)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_ca(
    *, common_name: str = "pilothouse-ca", now: datetime.datetime | None = None
) -> Issued:
    """A new self-signed CA, valid for ten years."""
    now = now or utcnow()
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        _builder(name, name, public, now=now, not_after=now + CA_VALIDITY, ca=True)
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


def issue_for(
    ca: Issued,
    identity: Identity,
    *,
    hosts: Iterable[str] = (),
    server: bool,
    client: bool,
    now: datetime.datetime | None = None,
    valid_for: datetime.timedelta = SERVING_VALIDITY,
) -> Issued:
    """A certificate naming `identity`, valid as a TLS server for exactly `hosts` (names or
    IPs) when `server`, and as a client when `client` (etcd's server and peer certificates
    are both: members dial each other with them)."""
    key = new_key()
    cert = _issue(
        ca,
        public_key=key.public_key(),
        subject=_subject(identity),
        sans=subject_alt_names(list(hosts)),
        server=server,
        client=client,
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
    not_after = min(now + valid_for, ca.cert.not_valid_after_utc)
    builder = (
        _builder(subject, ca.cert.subject, public_key, now=now, not_after=not_after, ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    now: datetime.datetime,
    not_after: datetime.datetime,
    ca: bool,
) -> x509.CertificateBuilder:
    """What every certificate made here has: a random serial, a backdated start, and the
    constraints and key usages of a CA (signs certificates) or of a leaf (signs only)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )

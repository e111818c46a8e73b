"""Checks on certificates: who signed one, the CA hash nodes pin, and when to renew.

Invariant: pure functions of the certificates and the time given; the CA hash is kubeadm's
(`sha256:<hex>` of the DER SubjectPublicKeyInfo), so the same value works in both.
"""

from __future__ import annotations

import datetime
import hashlib
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilothouse.pki.issue import BACKDATE
from pilothouse.pki.pem import PkiError, load_cert

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


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


def issued_at(cert: x509.Certificate) -> datetime.datetime:
    """When the cluster CA issued `cert` (to the second): its notBefore is backdated by
    exactly `issue.BACKDATE`."""
    return cert.not_valid_before_utc + BACKDATE


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

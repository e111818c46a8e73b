"""The cluster PKI: CA and certificates, CSR signing rules, kubeadm's CA hash, renewal, files."""

from __future__ import annotations

import datetime
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilothouse import pki

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.create_ca(now=NOW)


def _sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    ]


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_self_signed_p256_ca(ca: pki.Issued) -> None:
    assert ca.cert.issuer == ca.cert.subject
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.key.curve.name == "secp256r1"
    assert pki.verify_issued_by(ca.cert, ca.cert)


def test_serving_cert_names_localhost_the_server_name_and_given_hosts(ca: pki.Issued) -> None:
    serving = pki.issue_serving(ca, hosts=["10.1.0.1", "cp.example", "localhost"], now=NOW)
    sans = _sans(serving.cert)
    for host in ("localhost", "127.0.0.1", pki.SERVER_NAME, "10.1.0.1", "cp.example"):
        assert host in sans, f"a client dialing {host} would fail TLS name verification"
    assert sans.count("localhost") == 1
    assert ExtendedKeyUsageOID.SERVER_AUTH in _usages(serving.cert)
    assert pki.verify_issued_by(serving.cert, ca.cert)
    assert not pki.verify_issued_by(serving.cert, pki.create_ca().cert)


def test_client_certs_carry_user_and_groups(ca: pki.Issued) -> None:
    admin = pki.issue_client(ca, pki.ADMIN, now=NOW)
    identity = pki.Identity.of(admin.cert)
    assert identity == pki.Identity(user="admin", groups=("system:masters",))
    assert identity.role is pki.Role.ADMIN
    assert _usages(admin.cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    controlplane = pki.Identity.of(pki.issue_client(ca, pki.CONTROLPLANE, now=NOW).cert)
    assert controlplane.role is pki.Role.CONTROLPLANE
    assert pki.node_identity("n1").node_name == "n1"
    assert pki.Identity(user="system:node:n1", groups=()).role is pki.Role.OTHER


def test_node_csr_is_signed_for_the_named_node_only(ca: pki.Issued) -> None:
    key = pki.new_key()
    csr = pki.create_csr(key, pki.node_identity("n1"))
    cert = pki.sign_node_csr(ca, csr, node_name="n1", now=NOW)
    identity = pki.Identity.of(cert)
    assert identity.node_name == "n1"
    assert identity.groups == ("system:nodes",)
    assert _sans(cert) == ["n1"]
    assert cert.public_key() == key.public_key()
    assert _usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    with pytest.raises(pki.PkiError, match="may only ask for system:node:n2"):
        pki.sign_node_csr(ca, csr, node_name="n2", now=NOW)
    admin_csr = pki.create_csr(key, pki.ADMIN)
    with pytest.raises(pki.PkiError, match="asks for admin"):
        pki.sign_node_csr(ca, admin_csr, node_name="n1", now=NOW)
    with pytest.raises(pki.PkiError, match="not valid PEM"):
        pki.sign_node_csr(ca, b"garbage", node_name="n1", now=NOW)
    with pytest.raises(pki.PkiError, match="reserved"):
        pki.sign_node_csr(
            ca, pki.create_csr(key, pki.node_identity(pki.SERVER_NAME)), node_name=pki.SERVER_NAME
        )
    with pytest.raises(pki.PkiError, match="DNS-1123"):
        pki.check_node_name("Bad_Name")


def test_issued_certs_never_outlive_the_ca(ca: pki.Issued) -> None:
    late = NOW + datetime.timedelta(days=3649)
    serving = pki.issue_serving(ca, now=late)
    assert serving.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_ca_hash_is_kubeadms_sha256_of_the_spki(ca: pki.Issued) -> None:
    value = pki.ca_cert_hash(ca.cert_pem)
    assert value.startswith("sha256:") and len(value) == len("sha256:") + 64
    assert pki.check_hash_format(value.upper().replace("SHA256", "sha256")) == value
    with pytest.raises(pki.PkiError, match="sha256:<64 hex digits>"):
        pki.check_hash_format("abc")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_ca_hash_matches_the_openssl_pipeline(ca: pki.Issued) -> None:
    # The pipeline kubeadm's documentation gives for computing --discovery-token-ca-cert-hash.
    result = subprocess.run(
        "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        shell=True,
        input=ca.cert_pem,
        capture_output=True,
        check=True,
    )
    expected = "sha256:" + result.stdout.decode().split()[0]
    assert pki.ca_cert_hash(ca.cert_pem) == expected, (
        "an operator computing the CA hash with openssl would get a different value"
    )


def test_renewal_after_two_thirds_of_the_lifetime(ca: pki.Issued) -> None:
    node = pki.sign_node_csr(
        ca,
        pki.create_csr(pki.new_key(), pki.node_identity("n1")),
        node_name="n1",
        now=NOW,
        valid_for=datetime.timedelta(days=30),
    )
    start = node.not_valid_before_utc
    lifetime = node.not_valid_after_utc - start
    assert not pki.needs_renewal(node, NOW)
    assert not pki.needs_renewal(node, start + lifetime * 0.6)
    assert pki.needs_renewal(node, start + lifetime * 0.7)
    assert pki.needs_renewal(node, node.not_valid_after_utc + datetime.timedelta(days=1))
    assert pki.renewal_time(node) == start + lifetime * (2 / 3)
    assert pki.needs_renewal(node, start + lifetime * 0.3, fraction=0.25)


def test_keys_are_written_owner_only_and_read_back(ca: pki.Issued, tmp_path: Path) -> None:
    key_path = tmp_path / "pki" / "ca.key"
    cert_path = tmp_path / "pki" / "ca.crt"
    key_path.parent.mkdir()
    # A stale temporary file with loose permissions must not leak its mode into the key.
    (key_path.parent / ".ca.key.tmp").write_text("old")
    (key_path.parent / ".ca.key.tmp").chmod(0o666)
    pki.write_key(key_path, ca.key_pem)
    pki.write_cert(cert_path, ca.cert_pem)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600, "the CA key is readable by others"
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert pki.load_key(key_path.read_bytes()).private_numbers() == ca.key.private_numbers()
    assert pki.load_cert(cert_path.read_bytes()) == ca.cert
    with pytest.raises(pki.PkiError, match="not a PEM certificate"):
        pki.load_cert(b"nope")
    with pytest.raises(pki.PkiError, match="private key"):
        pki.load_key(b"nope")

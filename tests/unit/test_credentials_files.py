"""Loading TLS files for the CLI: good files load, bad ones fail with a line naming the file,
and loading them (and making gRPC credentials from them) imports no certificate parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse import credentials, pki


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ca = pki.create_ca()
    admin = pki.issue_client(ca, pki.ADMIN)
    other = pki.issue_client(pki.create_ca(), pki.ADMIN)
    paths = {
        "ca": tmp_path / "ca.crt",
        "cert": tmp_path / "admin.crt",
        "key": tmp_path / "admin.key",
        "other_key": tmp_path / "other.key",
        "garbage": tmp_path / "garbage.pem",
    }
    paths["ca"].write_bytes(ca.cert_pem)
    paths["cert"].write_bytes(admin.cert_pem)
    paths["key"].write_bytes(admin.key_pem)
    paths["other_key"].write_bytes(other.key_pem)
    paths["garbage"].write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    return paths


def test_good_files_load(files: dict[str, Path]) -> None:
    material = credentials.load_files(
        ca_cert=files["ca"], client_cert=files["cert"], client_key=files["key"]
    )
    assert material.ca_pem == files["ca"].read_bytes()
    assert material.identity == pki.ADMIN
    assert credentials.load_files(ca_cert=files["ca"]).cert_pem is None


def test_a_key_of_another_certificate_is_named(files: dict[str, Path]) -> None:
    with pytest.raises(credentials.CredentialsError, match="does not belong to certificate"):
        credentials.load_files(
            ca_cert=files["ca"], client_cert=files["cert"], client_key=files["other_key"]
        )


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_a_file_that_is_not_pem_is_named(files: dict[str, Path], which: str) -> None:
    chosen = {"ca": files["ca"], "cert": files["cert"], "key": files["key"]}
    chosen[which] = files["garbage"]
    with pytest.raises(credentials.CredentialsError, match=str(files["garbage"])):
        credentials.load_files(
            ca_cert=chosen["ca"], client_cert=chosen["cert"], client_key=chosen["key"]
        )


def test_a_missing_file_and_a_lone_key_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(credentials.CredentialsError, match="does not exist"):
        credentials.load_files(ca_cert=files["ca"].with_name("nothing.crt"))
    with pytest.raises(credentials.CredentialsError, match="needs its key"):
        credentials.load_files(ca_cert=files["ca"], client_cert=files["cert"])


def test_loading_files_imports_no_certificate_parser(files: dict[str, Path]) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pilothouse import credentials\n"
        f"m = credentials.load_files(ca_cert=Path({str(files['ca'])!r}),"
        f" client_cert=Path({str(files['cert'])!r}), client_key=Path({str(files['key'])!r}))\n"
        "m.channel_credentials(); credentials.channel_options()\n"
        "print(sorted(n for n in sys.modules if n.startswith('cryptography')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout

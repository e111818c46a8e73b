"""The CLI's TLS as a person meets it, against a real secure control plane: the admin config
works; a config whose CA did not sign the server's certificate, or whose files are broken,
fails with one `error:` line and no traceback (the CLI loads the files without a certificate
parser, and gRPC verifies the server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse import config as cli_config
from pilothouse import pki
from tests.fixtures.controlplane import ControlPlaneProcess

PILOTHOUSE = [sys.executable, "-m", "pilothouse.cli.main"]


def _get_pods(plane: ControlPlaneProcess, config: Path) -> subprocess.CompletedProcess[str]:
    env = plane.cli_env()
    env[cli_config.CONFIG_ENV] = str(config)
    return subprocess.run(
        [*PILOTHOUSE, "get", "pods"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _config_copy(plane: ControlPlaneProcess, home: Path) -> Path:
    """The admin config and the three files it names, copied to `home`, the config naming the
    copies."""
    settings = cli_config.resolve(config_path=str(plane.admin_config), environ={})
    home.mkdir(parents=True)
    lines = [f"server: {plane.address}"]
    for key, path in (
        ("ca-cert", settings.ca_cert),
        ("client-cert", settings.client_cert),
        ("client-key", settings.client_key),
    ):
        assert path is not None, f"{plane.admin_config} names no {key}"
        shutil.copy(path, home / path.name)
        lines.append(f"{key}: {home / path.name}")
    config = home / "admin.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_admin_config_lists_pods(shared_control_plane: ControlPlaneProcess) -> None:
    done = _get_pods(shared_control_plane, shared_control_plane.admin_config)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_signed_by_another_ca_is_refused(
    shared_control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    config = _config_copy(shared_control_plane, tmp_path / "home")
    settings = cli_config.resolve(config_path=str(config), environ={})
    assert settings.ca_cert is not None
    settings.ca_cert.write_bytes(pki.create_ca().cert_pem)  # trusts a CA the server never used
    done = _get_pods(shared_control_plane, config)
    assert done.returncode == 1, done.stdout
    # (gRPC's own log may print the handshake failure first.)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "did not issue" in last, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("broken", ["ca", "key"])
def test_broken_credential_files_are_named(
    shared_control_plane: ControlPlaneProcess, tmp_path: Path, broken: str
) -> None:
    config = _config_copy(shared_control_plane, tmp_path / "home")
    settings = cli_config.resolve(config_path=str(config), environ={})
    target = settings.ca_cert if broken == "ca" else settings.client_key
    assert target is not None
    if broken == "ca":
        target.write_text("not a certificate\n")
    else:  # a key of another identity: it does not belong to the client certificate
        other = pki.issue_client(pki.create_ca(), pki.ADMIN)
        target.write_bytes(other.key_pem)
    done = _get_pods(shared_control_plane, config)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: "), done.stderr
    assert str(target) in done.stderr
    wanted = "not a PEM certificate" if broken == "ca" else "does not belong to certificate"
    assert wanted in done.stderr

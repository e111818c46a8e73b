"""`pilothouse image build-test` and `image push`, run as a person runs them, into a registry."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def pilothouse(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_build_the_test_image_and_push_it(registry: Any, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    built = pilothouse("image", "build-test", str(archive))
    assert built.returncode == 0, built.stderr
    assert archive.is_file(), "build-test wrote no archive"

    ref = f"{registry.address}/library/busybox:stable"
    pushed = pilothouse("image", "push", str(archive), ref)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"{ref}: digest: sha256:"), pushed.stdout
    digest = pushed.stdout.split("digest: ", 1)[1].strip()

    connection = http.client.HTTPConnection(registry.address, timeout=10)
    connection.request(
        "GET",
        "/v2/library/busybox/manifests/stable",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, f"the registry does not have the pushed tag: {body[:200]!r}"
    assert response.getheader("Docker-Content-Digest") == digest
    assert json.loads(body)["layers"], "the pushed manifest has no layers"


def test_pushing_a_missing_archive_is_one_line(tmp_path: Path) -> None:
    result = pilothouse("image", "push", str(tmp_path / "nope.tar"), "127.0.0.1:1/x:y")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr, result.stderr

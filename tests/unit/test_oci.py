"""Image references, registries config and archives behave as a person expects."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from pilothouse.oci import DigestMismatch
from pilothouse.oci.archive import ArchiveError, ImageArchive
from pilothouse.oci.reference import InvalidReference, parse
from pilothouse.oci.registries import ConfigError, RegistriesConfig
from pilothouse.oci.testimage import build_test_image

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("busybox:stable", "docker.io/library/busybox:stable"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("team/app:1.2", "docker.io/team/app:1.2"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx:latest"),
        ("127.0.0.1:5000/web:v1", "127.0.0.1:5000/web:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("ghcr.io/org/tool@" + DIGEST, "ghcr.io/org/tool@" + DIGEST),
        ("quay.io/a/b:c@" + DIGEST, "quay.io/a/b:c@" + DIGEST),
    ],
)
def test_references_normalize_like_docker(text: str, normalized: str) -> None:
    assert str(parse(text)) == normalized
    assert str(parse(normalized)) == normalized, "a normalized reference does not round-trip"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("Busybox", "lower-case"),
        ("busy box", "whitespace"),
        ("busybox:-x", "tag '-x'"),
        ("busybox@sha256:1234", "digest"),
        ("a//b", "path component ''"),
        ("registry.io/", "no repository"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidReference, match=complaint):
        parse(text)


def test_registries_config_orders_mirrors_before_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "registries.yaml"
    path.write_text(
        "mirrors:\n"
        "  docker.io:\n    endpoint: ['http://127.0.0.1:5000', 'https://mirror.example.com']\n"
        "configs:\n"
        "  mirror.example.com:\n    auth: {username: u, password: p}\n"
        "    tls: {insecure_skip_verify: true}\n"
    )
    config = RegistriesConfig.load(path)
    urls = [e.url for e in config.endpoints("docker.io")]
    assert urls == [
        "http://127.0.0.1:5000",
        "https://mirror.example.com",
        "https://registry-1.docker.io",
    ]
    mirror = config.endpoints("docker.io")[1]
    assert mirror.config.username == "u" and mirror.config.insecure_skip_verify
    assert [e.url for e in config.endpoints("ghcr.io")] == ["https://ghcr.io"]
    assert [e.url for e in config.endpoints("127.0.0.1:5000")] == ["http://127.0.0.1:5000"]
    assert RegistriesConfig.load(tmp_path / "missing.yaml") == RegistriesConfig()


def test_plain_http_needs_loopback_or_insecure() -> None:
    with pytest.raises(ConfigError, match="insecure: true"):
        RegistriesConfig.from_dict(
            {"mirrors": {"docker.io": {"endpoint": ["http://10.0.0.5:5000"]}}}
        )
    config = RegistriesConfig.from_dict(
        {
            "mirrors": {"docker.io": {"endpoint": ["http://10.0.0.5:5000"]}},
            "configs": {"10.0.0.5:5000": {"insecure": True}},
            "disableDefaultEndpoint": True,
        }
    )
    assert [e.url for e in config.endpoints("docker.io")] == ["http://10.0.0.5:5000"]
    with pytest.raises(ConfigError, match="unknown key"):
        RegistriesConfig.from_dict({"mirror": {}})


def test_test_image_is_deterministic_and_named(tmp_path: Path) -> None:
    a = build_test_image(tmp_path / "a.tar")
    b = build_test_image(tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes(), "two builds of the test image differ"
    with ImageArchive(a) as archive:
        (image,) = archive.images
        assert image.names == ("docker.io/library/busybox:stable",)
    with tarfile.open(a) as tar:
        assert "index.json" in tar.getnames() and "oci-layout" in tar.getnames()


def test_tampered_archive_blob_is_refused(tmp_path: Path) -> None:
    path = build_test_image(tmp_path / "img.tar")
    data = bytearray(path.read_bytes())
    # The layer is the largest member; flip a byte in the middle of the file (inside it).
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with ImageArchive(path) as archive:
        manifest = json.loads(archive.images[0].manifest)
        layer = manifest["layers"][0]["digest"]
        with open(tmp_path / "out", "wb") as sink, pytest.raises(DigestMismatch):
            archive.copy_blob(layer, sink)


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"hello")
    with pytest.raises(ArchiveError, match="not a readable tar"):
        ImageArchive(tmp_path / "x.tar")


@pytest.mark.parametrize(
    ("reference", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("127.0.0.1:5000/web", "Always"),
        ("busybox:stable", "IfNotPresent"),
        ("127.0.0.1:5000/web:v1", "IfNotPresent"),
        ("busybox@" + DIGEST, "IfNotPresent"),
    ],
)
def test_default_pull_policy_is_kubernetes(reference: str, policy: str) -> None:
    from nodeagent.images import default_pull_policy

    assert default_pull_policy(reference).value == policy

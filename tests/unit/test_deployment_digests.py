"""Pinning a revision's images to digests: against a tiny loopback registry, and the rules for
tags that cannot be resolved and images already given by digest."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controlplane import digests
from pilothouse.oci import manifest as m
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.v1 import objects_pb2

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": {"mediaType": m.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 2},
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.fixture
def registry() -> Iterator[str]:
    """A registry on 127.0.0.1 that has exactly `web:v1`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/v2/web/manifests/v1":
                self.send_response(200)
                self.send_header("Content-Type", m.OCI_MANIFEST)
                self.send_header("Docker-Content-Digest", MANIFEST_DIGEST)
                self.send_header("Content-Length", str(len(MANIFEST)))
                self.end_headers()
                self.wfile.write(MANIFEST)
                return
            body = json.dumps(
                {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            ).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def template(*images: str) -> objects_pb2.PodTemplateSpec:
    t = objects_pb2.PodTemplateSpec()
    for index, image in enumerate(images):
        t.spec.containers.add(name=f"c{index}", image=image)
    return t


async def test_registry_resolver_pins_a_tag_to_its_manifest_digest(registry: str) -> None:
    resolver = digests.RegistryDigestResolver(RegistriesConfig())
    pinned = await digests.pin(template(f"{registry}/web:v1"), resolver)
    assert not pinned.failures
    container = pinned.template.spec.containers[0]
    assert container.image == f"{registry}/web@{MANIFEST_DIGEST}"
    assert pinned.template.metadata.annotations["pilothouse.io/image.c0"] == f"{registry}/web:v1"


async def test_missing_tag_and_unreachable_registry_keep_the_tag_and_say_why(
    registry: str,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    resolver = digests.RegistryDigestResolver(RegistriesConfig(), timeout=5)
    images = (f"{registry}/web:v9", f"127.0.0.1:{closed_port}/web:v1")
    pinned = await digests.pin(template(*images), resolver)
    assert [c.image for c in pinned.template.spec.containers] == list(images)
    assert not pinned.template.metadata.annotations, "an unresolved image got an annotation"
    reasons = {f.image: f.reason for f in pinned.failures}
    assert "MANIFEST_UNKNOWN" in reasons[images[0]], reasons
    assert images[1] in reasons, "an unreachable registry was not reported"


async def test_images_by_digest_stay_as_they_are_with_their_original_tag() -> None:
    pinned_template = template("web@sha256:" + "1" * 64)
    pinned_template.metadata.annotations["pilothouse.io/image.c0"] = "web:v1"
    result = await digests.pin(pinned_template, digests.StaticDigests({"web:v1": "sha256:x"}))
    assert result.template == pinned_template, "a pinned template was changed"
    assert not result.failures


async def test_resolution_turned_off_is_silent() -> None:
    result = await digests.pin(template("web:v1"), digests.NoDigests())
    assert result.template.spec.containers[0].image == "web:v1"
    assert not result.failures


def test_with_digest_keeps_the_repository_as_written() -> None:
    d = "sha256:" + "2" * 64
    assert digests.with_digest("busybox:stable", d) == f"busybox@{d}"
    assert digests.with_digest("127.0.0.1:5000/team/web:v1", d) == f"127.0.0.1:5000/team/web@{d}"
    assert digests.with_digest("127.0.0.1:5000/web", d) == f"127.0.0.1:5000/web@{d}"

"""The registry client against a small stdlib fake: bearer tokens, indexes, tampering.

Debian's docker-registry covers anonymous and basic auth (tests/integration/test_images.py);
it cannot issue bearer tokens without a separate token server, so that flow is tested here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pilothouse.oci import DigestMismatch
from pilothouse.oci import manifest as m
from pilothouse.oci.reference import parse
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import RegistryClient, Unauthorized

TOKEN = "tok-123"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    address: str = ""
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lie_about_digest: bool = False


def build_content(fake: FakeRegistry) -> str:
    layer = b"layer-bytes" * 100
    config = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(b"x")]},
        }
    ).encode()
    fake.blobs = {digest(layer): layer, digest(config): config}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": m.OCI_MANIFEST,
            "config": {"mediaType": m.OCI_CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": m.OCI_LAYER, "digest": digest(layer), "size": len(layer)}],
        }
    ).encode()
    other = manifest.replace(b'"schemaVersion": 2', b'"schemaVersion": 2 ')
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": m.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": m.OCI_MANIFEST,
                    "digest": digest(other),
                    "size": len(other),
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": m.OCI_MANIFEST,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    fake.manifests = {
        "v1": (index, m.OCI_INDEX),
        digest(index): (index, m.OCI_INDEX),
        digest(manifest): (manifest, m.OCI_MANIFEST),
        digest(other): (other, m.OCI_MANIFEST),
    }
    return digest(manifest)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    state = FakeRegistry()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path.startswith("/token"):
                want = "Basic " + base64.b64encode(b"alice:wonder").decode()
                if self.headers.get("Authorization") != want:
                    self._send(401, b'{"errors":[{"code":"DENIED","message":"bad login"}]}')
                else:
                    self._send(200, json.dumps({"token": TOKEN}).encode())
                return
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"http://{state.address}/token"
                challenge = f'Bearer realm="{realm}",service="fake",scope="repository:app:pull"'
                self._send(
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}',
                    {"WWW-Authenticate": challenge},
                )
                return
            _, _, _repo, kind, ref = self.path.split("/", 4)
            if kind == "manifests" and ref in state.manifests:
                body, media_type = state.manifests[ref]
                claimed = digest(b"lie") if state.lie_about_digest else digest(body)
                self._send(
                    200, body, {"Content-Type": media_type, "Docker-Content-Digest": claimed}
                )
            elif kind == "blobs" and ref in state.blobs:
                self._send(200, state.blobs[ref])
            else:
                self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def client_for(fake: FakeRegistry, *, password: str = "wonder") -> RegistryClient:
    return RegistryClient(
        RegistriesConfig.from_dict(
            {"configs": {fake.address: {"auth": {"username": "alice", "password": password}}}}
        )
    )


async def test_bearer_token_and_index_resolve_to_linux_amd64(fake: FakeRegistry) -> None:
    amd64 = build_content(fake)
    resolved = await client_for(fake).resolve(parse(f"{fake.address}/app:v1"))
    assert resolved.digest == amd64, "the index was not resolved to the linux/amd64 manifest"
    config = await resolved.repository.read_blob(resolved.manifest.config)
    assert json.loads(config)["config"]["Cmd"] == ["sh"]
    assert sum(r.startswith("/token") for r in fake.requests) == 1, "the token was not reused"


async def test_wrong_password_is_reported(fake: FakeRegistry) -> None:
    build_content(fake)
    with pytest.raises(Unauthorized, match="bad login"):
        await client_for(fake, password="nope").resolve(parse(f"{fake.address}/app:v1"))


async def test_manifest_digest_mismatch_is_refused(fake: FakeRegistry) -> None:
    build_content(fake)
    fake.lie_about_digest = True
    with pytest.raises(DigestMismatch, match="refusing"):
        await client_for(fake).resolve(parse(f"{fake.address}/app:v1"))


async def test_tampered_blob_is_refused(fake: FakeRegistry) -> None:
    build_content(fake)
    resolved = await client_for(fake).resolve(parse(f"{fake.address}/app:v1"))
    layer = resolved.manifest.layers[0]
    fake.blobs[layer.digest] = b"evil" + fake.blobs[layer.digest][4:]
    with pytest.raises(DigestMismatch, match="tampered"):
        await resolved.repository.get_blob(layer, io.BytesIO())

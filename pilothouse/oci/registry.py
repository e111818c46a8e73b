"""An OCI distribution (v2 API) client: resolve and fetch images, push archives.

Talks HTTP with the stdlib (`http.client` in worker threads via `asyncio.to_thread`), so the
event loop never blocks on the network. Auth: anonymous, then on a 401 the challenge decides:
Basic with configured credentials, or Bearer via the challenge's token realm (with those
credentials if any). Endpoints, credentials and TLS come from `RegistriesConfig`.

Invariants:
- Every blob is hashed while it streams and refused with `DigestMismatch` if it differs from
  its digest (or size); a manifest is checked against the digest it was asked by, or against
  the registry's Docker-Content-Digest header.
- A multi-platform index is resolved to linux/amd64 (configurable).
- `named_digest` fetches nothing: a HEAD of the manifest, whose Docker-Content-Digest says
  whether the image a tag names has changed (what `imagePullPolicy: Always` asks).
- Authorization headers never follow a redirect to another host.
- Errors carry the registry's own message (`MANIFEST_UNKNOWN: manifest unknown`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlencode, urljoin, urlsplit

import structlog

from pilothouse.oci import DigestMismatch, OCIError, sha256_digest
from pilothouse.oci import manifest as m
from pilothouse.oci.archive import ImageArchive
from pilothouse.oci.reference import Reference, parse
from pilothouse.oci.registries import Endpoint, RegistriesConfig, is_loopback

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_TIMEOUT = 60.0
_MAX_DOC = 16 << 20
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(OCIError):
    """The registry refused or failed a request; the message is the registry's."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(RegistryError):
    """The registry does not have that manifest, blob or repository."""


class Unauthorized(RegistryError):
    """The registry wants credentials we do not have, or rejected ours."""


class Unreachable(RegistryError):
    """The endpoint did not answer (connection refused, TLS failure, timeout)."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    digest: str = ""  # sha256 of a streamed body


def _registry_message(resp: _Response) -> str:
    try:
        errors = json.loads(resp.body).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    text = resp.body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}" + (f": {text}" if text else "")


def _send(
    endpoint: Endpoint,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | IO[bytes] | None = None,
    sink: IO[bytes] | None = None,
) -> _Response:
    """One HTTP exchange (following GET/HEAD redirects); streams a 200 body into `sink`."""
    for _ in range(6):
        parts = urlsplit(url)
        try:
            if parts.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.netloc, timeout=_TIMEOUT, context=endpoint.ssl_context()
                )
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=_TIMEOUT)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
        except OSError as exc:
            raise Unreachable(f"{parts.netloc}: {exc}") from exc
        try:
            got = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                new = urljoin(url, got.get("location", ""))
                if urlsplit(new).netloc != parts.netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = new
                continue
            if resp.status == 200 and sink is not None:
                hasher = hashlib.sha256()
                while chunk := resp.read(_CHUNK):
                    hasher.update(chunk)
                    sink.write(chunk)
                return _Response(resp.status, got, b"", "sha256:" + hasher.hexdigest())
            data = resp.read(_MAX_DOC + 1) if method != "HEAD" else b""
            if len(data) > _MAX_DOC:
                raise RegistryError(f"{parts.netloc}: response larger than {_MAX_DOC} bytes")
            return _Response(resp.status, got, data)
        except OSError as exc:
            raise Unreachable(f"{parts.netloc}: {exc}") from exc
        finally:
            conn.close()
    raise RegistryError(f"too many redirects fetching {url}")


class Repository:
    """One repository on one endpoint, with its auth state (tokens are reused)."""

    def __init__(self, endpoint: Endpoint, name: str, *, push: bool = False) -> None:
        self.endpoint = endpoint
        self.name = name
        self._actions = "pull,push" if push else "pull"
        self._auth = ""  # set after the first 401 challenge, then reused

    def _url(self, path: str) -> str:
        return f"{self.endpoint.url}/v2/{self.name}/{path}"

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | Callable[[], IO[bytes]] | None = None,
        sink: IO[bytes] | None = None,
    ) -> _Response:
        for attempt in range(2):
            hdrs = dict(headers or {})
            if self._auth:
                hdrs["Authorization"] = self._auth
            payload = body() if callable(body) else body
            try:
                resp = await asyncio.to_thread(
                    _send, self.endpoint, method, url, headers=hdrs, body=payload, sink=sink
                )
            finally:
                if payload is not None and not isinstance(payload, bytes):
                    payload.close()
            if resp.status != 401 or attempt:
                return resp
            await self._authorize(resp.headers.get("www-authenticate", ""), resp)
        raise AssertionError("unreachable")

    async def _authorize(self, challenge: str, resp: _Response) -> None:
        scheme = challenge.split(" ", 1)[0].lower()
        params = dict(_CHALLENGE.findall(challenge))
        conf = self.endpoint.config
        if scheme == "basic":
            if not conf.username:
                raise Unauthorized(
                    f"{self.endpoint.host}: authentication required and no credentials are "
                    f"configured for it ({_registry_message(resp)})",
                    status=401,
                )
            cred = base64.b64encode(f"{conf.username}:{conf.password}".encode()).decode()
            self._auth = f"Basic {cred}"
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(
                f"{self.endpoint.host}: unsupported auth challenge {challenge!r}", status=401
            )
        self._auth = "Bearer " + await self._token(params)

    async def _token(self, params: dict[str, str]) -> str:
        realm = params["realm"]
        host = urlsplit(realm).netloc
        if not realm.startswith("https://") and not (
            is_loopback(host) or self.endpoint.config.insecure or not self.endpoint.secure
        ):
            raise Unauthorized(f"{self.endpoint.host}: refusing plain-http token realm {realm}")
        query = {"scope": params.get("scope") or f"repository:{self.name}:{self._actions}"}
        if params.get("service"):
            query["service"] = params["service"]
        conf = self.endpoint.config
        headers = {}
        if conf.username:
            cred = base64.b64encode(f"{conf.username}:{conf.password}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        sep = "&" if "?" in realm else "?"
        resp = await asyncio.to_thread(
            _send, self.endpoint, "GET", f"{realm}{sep}{urlencode(query)}", headers=headers
        )
        if resp.status != 200:
            raise Unauthorized(
                f"{self.endpoint.host}: token request to {realm} failed: {_registry_message(resp)}",
                status=resp.status,
            )
        try:
            data = json.loads(resp.body)
            return str(data.get("token") or data["access_token"])
        except (ValueError, KeyError, AttributeError) as exc:
            raise Unauthorized(f"{self.endpoint.host}: token endpoint gave no token") from exc

    def _fail(self, resp: _Response, what: str) -> RegistryError:
        message = f"{self.endpoint.host}: {what}: {_registry_message(resp)}"
        if resp.status == 404:
            return NotFound(message, status=404)
        if resp.status in (401, 403):
            return Unauthorized(message, status=resp.status)
        return RegistryError(message, status=resp.status)

    # -- pull ---------------------------------------------------------------------------------
    async def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(raw, media type, digest) of the manifest or index named by tag or digest."""
        resp = await self._request(
            "GET", self._url(f"manifests/{ref}"), headers={"Accept": m.ACCEPT}
        )
        if resp.status != 200:
            raise self._fail(resp, f"manifest {self.name}:{ref}")
        digest = sha256_digest(resp.body)
        expected = ref if ref.startswith("sha256:") else resp.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatch(
                f"{self.endpoint.host}: manifest {self.name}:{ref} has digest {digest}, "
                f"expected {expected}: refusing it"
            )
        return resp.body, m.media_type_of(resp.body, resp.headers.get("content-type", "")), digest

    async def head_manifest(self, ref: str) -> str | None:
        """The digest the registry names for a tag (HEAD, nothing fetched), or None when it
        does not say (no Docker-Content-Digest header)."""
        resp = await self._request(
            "HEAD", self._url(f"manifests/{ref}"), headers={"Accept": m.ACCEPT}
        )
        if resp.status != 200:
            raise self._fail(resp, f"manifest {self.name}:{ref}")
        digest = resp.headers.get("docker-content-digest", "")
        return digest if digest.startswith("sha256:") else None

    async def get_blob(self, desc: m.Descriptor, sink: IO[bytes]) -> None:
        """Stream a blob into `sink`; `DigestMismatch` (sink then holds garbage) if it differs."""
        resp = await self._request("GET", self._url(f"blobs/{desc.digest}"), sink=sink)
        if resp.status != 200:
            raise self._fail(resp, f"blob {desc.digest}")
        if resp.digest != desc.digest:
            raise DigestMismatch(
                f"{self.endpoint.host}: blob {desc.digest} of {self.name} has digest "
                f"{resp.digest}: it was corrupted or tampered with; refusing it"
            )

    async def read_blob(self, desc: m.Descriptor) -> bytes:
        buf = io.BytesIO()
        await self.get_blob(desc, buf)
        return buf.getvalue()

    # -- push ---------------------------------------------------------------------------------
    async def has_blob(self, digest: str) -> bool:
        resp = await self._request("HEAD", self._url(f"blobs/{digest}"))
        if resp.status in (200, 404):
            return resp.status == 200
        raise self._fail(resp, f"checking blob {digest}")

    async def put_blob(self, desc: m.Descriptor, opener: Callable[[], IO[bytes]]) -> None:
        """Monolithic upload: POST for a session, PUT the whole blob with its digest."""
        resp = await self._request("POST", self._url("blobs/uploads/"), body=b"")
        if resp.status not in (201, 202):
            raise self._fail(resp, "starting a blob upload")
        location = urljoin(self._url("blobs/uploads/"), resp.headers.get("location", ""))
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}{urlencode({'digest': desc.digest})}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        resp = await self._request("PUT", url, headers=headers, body=opener)
        if resp.status not in (201, 204):
            raise self._fail(resp, f"uploading blob {desc.digest}")

    async def put_manifest(self, ref: str, raw: bytes, media_type: str) -> str:
        resp = await self._request(
            "PUT",
            self._url(f"manifests/{ref}"),
            headers={"Content-Type": media_type},
            body=raw,
        )
        if resp.status not in (200, 201, 202):
            raise self._fail(resp, f"putting manifest {self.name}:{ref}")
        return sha256_digest(raw)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reference resolved to one platform's image manifest on the endpoint that served it."""

    reference: Reference
    repository: Repository
    digest: str  # manifest digest (the platform's, not the index's)
    media_type: str
    raw: bytes
    manifest: m.Manifest
    named: str = ""  # the digest the reference named there: the index's, for a multi-platform


class RegistryClient:
    def __init__(
        self, config: RegistriesConfig | None = None, *, platform: m.Platform | None = None
    ) -> None:
        self.config = config or RegistriesConfig()
        self.platform = platform or m.Platform()

    async def resolve(self, ref: Reference) -> Resolved:
        """Find the image on the first endpoint that has it; raise the most telling error."""
        errors: list[RegistryError] = []
        for endpoint in self.config.endpoints(ref.registry):
            repo = Repository(endpoint, ref.repository)
            try:
                raw, media_type, digest = await repo.get_manifest(ref.object)
                named = digest
                if media_type in m.INDEX_TYPES:
                    chosen = m.select_platform(m.parse_index(raw), self.platform)
                    raw, media_type, digest = await repo.get_manifest(chosen.digest)
                manifest = m.parse_manifest(raw)
            except (NotFound, Unreachable) as exc:
                log.info("registry.endpoint_failed", endpoint=endpoint.url, error=str(exc))
                errors.append(exc)
                continue
            return Resolved(ref, repo, digest, media_type, raw, manifest, named)
        raise _most_telling(errors, ref)

    async def named_digest(self, ref: Reference) -> str | None:
        """The digest the first endpoint that has `ref` names for it (a HEAD of the manifest:
        an index's digest for a multi-platform image), or None when it does not say."""
        errors: list[RegistryError] = []
        for endpoint in self.config.endpoints(ref.registry):
            try:
                return await Repository(endpoint, ref.repository).head_manifest(ref.object)
            except (NotFound, Unreachable) as exc:
                log.info("registry.endpoint_failed", endpoint=endpoint.url, error=str(exc))
                errors.append(exc)
        raise _most_telling(errors, ref)

    def push_repository(self, ref: Reference) -> Repository:
        endpoint = self.config.endpoints(ref.registry)[0]
        return Repository(endpoint, ref.repository, push=True)


def _most_telling(errors: list[RegistryError], ref: Reference) -> RegistryError:
    """What to say when no endpoint served `ref`: a refusal before an unreachable endpoint."""
    found = [e for e in errors if not isinstance(e, Unreachable)]
    return (found or errors)[0] if errors else RegistryError(f"no endpoint for {ref}")


async def push_archive(
    archive: Path, reference: str, *, config: RegistriesConfig | None = None
) -> str:
    """Push the image in an OCI-layout or docker-save archive as `reference`; return its digest.

    Blobs the registry already has are skipped (HEAD). With several images in the archive, the
    one saved under `reference` is pushed, else the first.
    """
    ref = parse(reference)
    repo = RegistryClient(config).push_repository(ref)
    with ImageArchive(Path(archive)) as arc:
        if not arc.images:
            raise OCIError(f"{archive}: the archive holds no image")
        image = next((i for i in arc.images if str(ref) in i.names), arc.images[0])
        manifest = m.parse_manifest(image.manifest)
        for desc in (manifest.config, *manifest.layers):
            if await repo.has_blob(desc.digest):
                continue
            size = arc.blob_size(desc.digest)
            await repo.put_blob(
                m.Descriptor(desc.media_type, desc.digest, size),
                lambda d=desc.digest: arc.open_blob(d),  # type: ignore[misc]
            )
            log.info("image.blob_pushed", digest=desc.digest, size=size, repository=ref.name)
        digest = await repo.put_manifest(ref.object, image.manifest, image.media_type)
    log.info("image.pushed", reference=str(ref), digest=digest)
    return digest

"""The dashboard's HTTP server: a small HTTP/1.1 server (h11 over asyncio streams) that serves
the read-only pages of `pages`, their live fragments, a pod's log as a stream of server-sent
events, and the local script and style sheet. No CDN, no third-party script: everything the
browser loads comes from here.

Who may look (every path, the script included):
- over TLS (the control plane's serving certificate, when it has a PKI), a client certificate
  of the cluster CA naming an admin (`O=system:masters`), as the API asks of the CLI; or
- the dashboard token (`<data-dir>/dashboard-token`, made on first start, mode 0600, printed by
  `up`): `Authorization: Bearer TOKEN`, or `?token=TOKEN` once (answered with a cookie, HttpOnly
  and SameSite=Strict, and a redirect to the same page without it in the address).
Anything else gets 401 and a page saying what is missing.

Invariants: only GET and HEAD are served (the dashboard changes nothing); a request's failure
is a 500 page for that request, never the server's end; tokens are compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import ssl
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
import structlog
from cryptography import x509

from controlplane.dashboard import pages
from controlplane.nodes.agent import AgentCallFailed, Connect
from controlplane.nodes.usage import UsageGatherer
from controlplane.objects import ObjectStore
from controlplane.store import NotFound
from pilothouse import pki as pki_lib
from pilothouse.process import addressfile

log = structlog.get_logger(__name__)

TOKEN_FILE = "dashboard-token"
ADDRESS_FILE = "dashboard.url"  # where it serves, for `up` (removed when it stops)
COOKIE = "pilothouse_dashboard"
STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_MAX_REQUEST = 16 * 1024


def ensure_token(data_dir: Path) -> str:
    """The dashboard token, made on first start (0600)."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


class _Response(Exception):
    def __init__(self, status: int, body: str, *, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.status, self.body, self.headers = status, body, list(headers)


class Dashboard:
    """A runnable ("dashboard") serving on `listen` (HOST:PORT; port 0: any)."""

    name = "dashboard"

    def __init__(
        self,
        *,
        listen: str,
        objects: ObjectStore,
        usage: UsageGatherer,
        connect: Connect,
        data_dir: Path,
        pki: Any = None,
    ) -> None:
        self._listen = listen
        self._objects = objects
        self._usage = usage
        self._connect = connect
        self._token = ensure_token(data_dir)
        self._address_file = data_dir / ADDRESS_FILE
        self._tls = _tls_context(pki, data_dir) if pki is not None else None
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        host, _, port = self._listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._serve, host=host.strip("[]"), port=int(port), ssl=self._tls
        )
        bound = self._server.sockets[0].getsockname()
        self.address = f"{host}:{bound[1]}"
        scheme = "https" if self._tls else "http"
        addressfile.write(self._address_file, f"{scheme}://{self.address}/")
        log.info("dashboard.serving", url=f"{scheme}://{self.address}/")
        return self.address

    async def run(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            addressfile.remove(self._address_file)

    # -- one connection -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
        try:
            while True:
                request = await _next_request(conn, reader)
                if request is None:
                    return
                keep = await self._answer(conn, writer, request)
                if not keep or conn.our_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request
    ) -> bool:
        target = urllib.parse.urlsplit(request.target.decode("latin-1"))
        path, query = target.path, urllib.parse.parse_qs(target.query)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        try:
            if request.method not in (b"GET", b"HEAD"):
                raise _Response(405, pages.message("Read-only", "The dashboard only shows."))
            extra = self._authorize(writer, headers, query, path)
            if path.startswith("/api/logs/"):
                namespace, _, pod = path.removeprefix("/api/logs/").partition("/")
                await self._logs(conn, writer, namespace, pod, query)
                return False
            status, body, ctype = await self._page(path, query)
            await _send(conn, writer, status, body, ctype, extra)
        except _Response as answer:
            await _send(
                conn, writer, answer.status, answer.body, "text/html; charset=utf-8", answer.headers
            )
        except Exception as error:  # one request fails, the server goes on
            log.warning("dashboard.failed", path=path, error=repr(error))
            await _send(
                conn, writer, 500, pages.message("Error", str(error)), "text/html; charset=utf-8"
            )
        return True

    def _authorize(
        self,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        query: dict[str, list[str]],
        path: str,
    ) -> list[tuple[str, str]]:
        if _admin_certificate(writer):
            return []
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given:
            cookies = headers.get("cookie", "")
            for part in cookies.split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    given = value
        if given and hmac.compare_digest(given.encode(), self._token.encode()):
            return []
        token = (query.get("token") or [""])[0]
        if token and hmac.compare_digest(token.encode(), self._token.encode()):
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            if self._tls is not None:
                cookie += "; Secure"
            raise _Response(303, "", headers=[("Set-Cookie", cookie), ("Location", path or "/")])
        raise _Response(
            401,
            pages.message(
                "Unauthorized",
                "The dashboard needs a client certificate of the cluster's admins or the "
                "dashboard token (printed by `pilothouse up`, kept in the control plane's "
                "data dir as dashboard-token): open /?token=TOKEN once.",
            ),
        )

    async def _page(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, str]:
        html = "text/html; charset=utf-8"
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            file = STATIC / name
            if "/" in name or not file.is_file():
                raise _Response(404, pages.message("Not found", path))
            return 200, file.read_text(), _TYPES.get(file.suffix, "text/plain")
        view = await pages.View.gather(self._objects, self._usage)
        if path == "/":
            return 200, pages.overview(view), html
        if path == "/fragment/overview":
            return 200, pages.overview_body(view), html
        if path.startswith("/pods/"):
            namespace, _, pod = path.removeprefix("/pods/").partition("/")
            try:
                found = await self._objects.get(pages.Kind.POD, namespace, pod)
            except NotFound:
                raise _Response(404, pages.message("Not found", f'pod "{pod}" not found')) from None
            return 200, pages.pod_logs(found), html
        raise _Response(404, pages.message("Not found", path))

    async def _logs(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        namespace: str,
        pod: str,
        query: dict[str, list[str]],
    ) -> None:
        """The pod's log as server-sent events: one `data:` line per log line, following."""
        response = h11.Response(
            status_code=200,
            headers=[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ],
        )
        writer.write(conn.send(response))
        async for line in self._log_lines(namespace, pod, (query.get("container") or [""])[0]):
            writer.write(conn.send(h11.Data(data=f"data: {line}\n\n".encode())))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _log_lines(self, namespace: str, pod: str, container: str) -> AsyncIterator[str]:
        try:
            found = await self._objects.get(pages.Kind.POD, namespace, pod)
            node = await self._objects.get(pages.Kind.NODE, "", found.spec.node_name)
        except NotFound:
            yield f"(pod {pod} or its node is gone)"
            return
        from controlplane.nodes import conditions

        address = conditions.endpoint(node)
        if address is None:
            yield "(its node has no agent address)"
            return
        carry = ""
        try:
            async with self._connect(address, node.metadata.name) as agent:
                async for data in agent.logs(
                    namespace=namespace, pod=pod, container=container, tail_lines=200, follow=True
                ):
                    carry += data.decode("utf-8", errors="replace")
                    *lines, carry = carry.split("\n")
                    for line in lines:
                        yield line
        except AgentCallFailed as error:
            yield f"(logs unavailable: {error.message})"


async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    request = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(8192)
            conn.receive_data(data)
            if not data and conn.their_state is h11.IDLE:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _send(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    status: int,
    body: str,
    ctype: str,
    extra: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> None:
    data = body.encode()
    headers = [
        ("Content-Type", ctype),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'"),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


def _admin_certificate(writer: asyncio.StreamWriter) -> bool:
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None:
        return False
    der = sslobj.getpeercert(binary_form=True)
    if not der:
        return False
    identity = pki_lib.Identity.of(x509.load_der_x509_certificate(der))
    return identity.role is pki_lib.Role.ADMIN


def _tls_context(pki: Any, data_dir: Path) -> ssl.SSLContext:
    """TLS with the API's serving certificate; a client certificate of the CA is asked for but
    optional (the token is the other way in)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(pki.serving.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(pki.serving.key_pem)
        context.load_cert_chain(cert, key)
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
    context.verify_mode = ssl.CERT_OPTIONAL
    return context

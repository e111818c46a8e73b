"""TLS credentials as both sides use them: loading files, gRPC channel and server credentials,
reading the caller's identity, and guarding a server so only some identities get through.

Vocabulary: see `pilothouse.pki` (identity, serving certificate, node certificate).

Invariants:
- Clients always verify the server against the cluster CA, and verify the name the server's
  certificate is for (`pki.SERVER_NAME` for the control plane, the node name for an agent), not
  the address dialed: one certificate serves every address a cluster uses.
- A caller's identity is read only from a certificate the TLS layer verified (gRPC puts
  `x509_pem_cert` into the auth context only then); no certificate means anonymous (None).
- A guarded server refuses before the handler runs: UNAUTHENTICATED without an identity,
  PERMISSION_DENIED with the wrong one; each refusal is logged as `auth.denied`.
- Loading files needs no certificate parser: OpenSSL (the `ssl` module asyncio has loaded
  anyway) checks that each file is PEM and that the key belongs to the certificate, so a CLI
  command that only hands the files to gRPC never imports cryptography.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from pilothouse import pki
from pilothouse.config import Config

if TYPE_CHECKING:
    from cryptography import x509


class CredentialsError(ValueError):
    """Credential files that are missing, unreadable or do not belong together."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The CA to verify the other side with, and optionally our own certificate and key."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )

    @property
    def identity(self) -> pki.Identity | None:
        return pki.Identity.of(pki.load_cert(self.cert_pem)) if self.cert_pem else None


def channel_options(server_name: str = pki.SERVER_NAME) -> tuple[tuple[str, str], ...]:
    """Channel options that verify the server's certificate for `server_name`."""
    return (
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.default_authority", server_name),
    )


def secure_channel(
    address: str,
    material: TlsMaterial,
    *,
    server_name: str = pki.SERVER_NAME,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        address,
        material.channel_credentials(),
        options=(*channel_options(server_name), *options),
    )


def server_credentials(
    *, cert_pem: bytes, key_pem: bytes, ca_pem: bytes, require_client_cert: bool
) -> grpc.ServerCredentials:
    """TLS for a server. The CA is appended to the presented chain, so a joining node can read
    it from the handshake and check it against its --ca-cert-hash."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem + ca_pem)],
        root_certificates=ca_pem if require_client_cert else None,
        require_client_auth=require_client_cert,
    )


def load_files(
    *, ca_cert: Path, client_cert: Path | None = None, client_key: Path | None = None
) -> TlsMaterial:
    if (client_cert is None) != (client_key is None):
        raise CredentialsError("a client certificate needs its key, and a key its certificate")

    def read(path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise CredentialsError(f"{what} {path} does not exist") from None
        except OSError as error:
            raise CredentialsError(f"cannot read {what} {path}: {error.strerror}") from None

    material = TlsMaterial(
        ca_pem=read(ca_cert, "CA certificate"),
        cert_pem=read(client_cert, "client certificate") if client_cert else None,
        key_pem=read(client_key, "client key") if client_key else None,
    )
    _check_files(ca_cert, material, client_cert=client_cert, client_key=client_key)
    return material


def _check_files(
    ca_cert: Path, material: TlsMaterial, *, client_cert: Path | None, client_key: Path | None
) -> None:
    """Raise CredentialsError unless each file holds what it should and the client key belongs
    to the client certificate (OpenSSL's checks, the ones the TLS handshake would make)."""
    _check_certificate(material.ca_pem, f"CA certificate {ca_cert}")
    if client_cert is None or client_key is None or material.cert_pem is None:
        return
    _check_certificate(material.cert_pem, f"client certificate {client_cert}")
    try:
        # A key that needs a password is refused (the password given is empty, never a prompt).
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            client_cert, client_key, password=""
        )
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise CredentialsError(
                f"client key {client_key} does not belong to certificate {client_cert}"
            ) from None
        reason = error.reason or "no key found"
        raise CredentialsError(
            f"client key {client_key}: not an unencrypted PEM private key ({reason})"
        ) from None


def _check_certificate(pem: bytes, what: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as error:
        raise CredentialsError(f"{what}: not a PEM certificate ({error})") from None


def from_config(config: Config) -> TlsMaterial | None:
    """The CLI's credentials from its config (None: plaintext, the `--insecure` dev mode)."""
    if config.ca_cert is None:
        if config.client_cert or config.client_key:
            raise CredentialsError(
                f"config file {config.path}: client-cert/client-key need ca-cert as well"
            )
        return None
    return load_files(
        ca_cert=config.ca_cert, client_cert=config.client_cert, client_key=config.client_key
    )


def write_client_config(
    path: Path, *, server: str, ca_cert: Path, client_cert: Path, client_key: Path
) -> None:
    """Write a CLI config file (pilothouse.config's format) with mode 0600. Paths inside the
    file's own directory are written relative to it, so the directory can be copied whole."""

    def relative(target: Path) -> str:
        try:
            return str(target.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            return str(target.resolve())

    import yaml

    text = yaml.safe_dump(
        {
            "server": server,
            "ca-cert": relative(ca_cert),
            "client-cert": relative(client_cert),
            "client-key": relative(client_key),
        },
        sort_keys=False,
    )
    pki.write_secret(path, text.encode())


# One entry per peer certificate seen: a control plane of 1,000 nodes sees 1,000 of them
# every heartbeat interval (a smaller cache missed on every call, parsing each PEM again).
_PEERS_CACHED = 8192


@functools.lru_cache(maxsize=_PEERS_CACHED)
def _identity_of_pem(pem: bytes) -> pki.Identity:
    return pki.Identity.of(pki.load_cert(pem))


@functools.lru_cache(maxsize=_PEERS_CACHED)
def _certificate_of_pem(pem: bytes) -> x509.Certificate:
    return pki.load_cert(pem)


def peer_certificate(context: grpc.aio.ServicerContext) -> x509.Certificate | None:
    """The caller's verified certificate, or None when it showed none."""
    pems = context.auth_context().get("x509_pem_cert")
    return _certificate_of_pem(pems[0]) if pems else None


def peer_identity(context: grpc.aio.ServicerContext) -> pki.Identity | None:
    """The verified identity of the caller, or None when it showed no certificate."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    return _identity_of_pem(pems[0])


# A check runs before a handler: (context, method, request or None for client streams).
# It returns normally to let the call through and aborts the call otherwise.
Check = Callable[[grpc.aio.ServicerContext, str, Any], Awaitable[None]]


# The four call shapes: (handler attribute, handler factory, streams requests, streams replies).
_SHAPES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, False, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, True, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True, True),
)


def guard_handler(handler: grpc.RpcMethodHandler, method: str, check: Check) -> Any:
    """`handler` with `check` run first, for each of the four call shapes."""
    if handler is None:
        return None
    for attribute, make, streams_in, streams_out in _SHAPES:
        inner = getattr(handler, attribute)
        if inner:
            guarded = _guarded(
                inner, method=method, check=check, streams_in=streams_in, streams_out=streams_out
            )
            return make(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return None


def _guarded(
    inner: Any, *, method: str, check: Check, streams_in: bool, streams_out: bool
) -> Callable[..., Any]:
    # A client stream has no single request to show the check.
    if streams_out:

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context, method, None if streams_in else request)
            async for item in _as_stream(inner(request, context)):
                yield item

        return streaming

    async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(context, method, None if streams_in else request)
        return await inner(request, context)

    return single


async def _as_stream(result: Any) -> AsyncIterator[Any]:
    # A streaming handler is either an async generator or a coroutine that calls
    # context.write(); both are served through one async generator here.
    if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Runs `check` before every handler of the server."""

    def __init__(self, check: Check) -> None:
        self._check = check

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        return guard_handler(handler, handler_call_details.method, self._check)


def _log() -> Any:
    """This module's logger; structlog is imported by servers that refuse someone, not by
    every CLI command that only loads credentials."""
    import structlog

    return structlog.get_logger(__name__)


def require_identity(*allowed: pki.Identity) -> GuardInterceptor:
    """An interceptor that lets through only callers whose certificate names one of `allowed`
    (the agent's server: only the control plane, `pki.CONTROLPLANE`)."""
    wanted = frozenset(allowed)

    async def check(context: grpc.aio.ServicerContext, method: str, request: Any) -> None:
        identity = peer_identity(context)
        if identity is None:
            _log().warning("auth.denied", identity="anonymous", method=method)
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a client certificate signed by the cluster CA is required",
            )
        if identity not in wanted:
            _log().warning("auth.denied", identity=str(identity), method=method)
            names = ", ".join(str(i) for i in sorted(wanted, key=str))
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity} may not call {method}; only {names} may",
            )

    return GuardInterceptor(check)

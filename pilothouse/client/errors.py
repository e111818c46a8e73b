"""Client errors: every gRPC failure as a `ClientError` a person can act on.

Invariant: the message names the object (`deployments "web" not found`), the field errors one
per line, or why the control plane could not be reached and what to do about it; the code
(`ErrorCode`) is for programs that branch on it.
"""

from __future__ import annotations

import enum

import grpc

from pilothouse.client.fielderrors import FieldProblem, field_problems
from pilothouse.kinds import Kind


class ErrorCode(enum.Enum):
    NOT_FOUND = "NotFound"
    ALREADY_EXISTS = "AlreadyExists"
    CONFLICT = "Conflict"
    INVALID = "Invalid"
    UNAVAILABLE = "Unavailable"
    UNREACHABLE = "Unreachable"
    TIMEOUT = "Timeout"
    FORBIDDEN = "Forbidden"
    UNAUTHORIZED = "Unauthorized"
    UNSUPPORTED = "Unsupported"
    INTERNAL = "Internal"


class ClientError(Exception):
    """A failed call, with a message fit for a person to read."""

    def __init__(
        self, code: ErrorCode, message: str, *, field_errors: tuple[FieldProblem, ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_errors = field_errors


def translate(exc: grpc.aio.AioRpcError, *, kind: Kind, name: str, address: str) -> ClientError:
    """A gRPC failure as a person should read it."""
    code = exc.code()
    details = (exc.details() or "").strip()
    resource = kind.info.plural
    if code == grpc.StatusCode.NOT_FOUND:
        text = f'{resource} "{name}" not found' if name else details or f"{resource} not found"
        return ClientError(ErrorCode.NOT_FOUND, text)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        text = f'{resource} "{name}" already exists' if name else details
        return ClientError(ErrorCode.ALREADY_EXISTS, text)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        problems = field_problems(exc.trailing_metadata())
        if problems:
            return ClientError(
                ErrorCode.INVALID, "\n".join(str(p) for p in problems), field_errors=problems
            )
        return ClientError(ErrorCode.INVALID, details or f"{resource} {name!r} is invalid")
    if code == grpc.StatusCode.ABORTED:
        text = f'{resource} "{name}" was changed by someone else meanwhile; read it again and retry'
        return ClientError(ErrorCode.CONFLICT, details or text)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return ClientError(ErrorCode.CONFLICT, details or "precondition failed")
    if code == grpc.StatusCode.UNAVAILABLE:
        if "certificate_verify_failed" in details.lower():
            return ClientError(
                ErrorCode.UNREACHABLE,
                f"the control plane at {address} shows a certificate the CA in your config "
                "(ca-cert) did not issue: is the config for this cluster?",
            )
        reason = connection_failure(details)
        if reason is not None:
            return ClientError(ErrorCode.UNREACHABLE, unreachable_message(address, reason))
        return ClientError(ErrorCode.UNAVAILABLE, details or "the control plane is unavailable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(
            ErrorCode.TIMEOUT,
            f"the control plane at {address} did not answer in time ({details or 'deadline'})",
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return ClientError(ErrorCode.FORBIDDEN, details or "permission denied")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ClientError(ErrorCode.UNAUTHORIZED, details or "not authenticated")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ClientError(
            ErrorCode.UNSUPPORTED,
            f"the control plane at {address} does not support this call yet"
            + (f" ({details})" if details and details != "Method not found!" else ""),
        )
    if code == grpc.StatusCode.CANCELLED:
        return ClientError(ErrorCode.UNAVAILABLE, details or "the call was cancelled")
    return ClientError(
        ErrorCode.INTERNAL, f"{code.name.lower()}: {details}" if details else code.name
    )


# A plaintext client meets a TLS server as a connection that closes: say what to do.
PLAINTEXT_HINT = (
    "it serves mutual TLS unless started with --insecure, and no credentials were given: "
    "pass its admin config with --config <data-dir>/admin.conf or PILOTHOUSE_CONFIG"
)


def unreachable_message(address: str, reason: str) -> str:
    return (
        f"cannot reach the control plane at {address}: {reason}. Is it running? "
        "Start one with `pilothouse controlplane` or pass --server."
    )


# How gRPC itself (not a server) words a failure to connect: details start with one of these.
_CONNECT_PREFIXES = (
    "failed to connect to all addresses",
    "errors resolving",
    "dns resolution failed",
    "empty address list",
    "socket closed",
    "connection reset",
    "recvmsg",
    "connection refused",
)
# Then the cause, found anywhere in the details.
_CONNECT_REASONS = (
    ("connection refused", "connection refused"),
    ("errors resolving", "the host name does not resolve"),
    ("dns resolution failed", "the host name does not resolve"),
    ("deadline exceeded", "connection timed out"),
    ("timed out", "connection timed out"),
    ("network is unreachable", "network is unreachable"),
    ("no route to host", "no route to host"),
    ("connection reset", "the connection was reset"),
    ("socket closed", "the connection was closed"),
)


def connection_failure(details: str) -> str | None:
    """Why no connection could be made, or None when the server itself said UNAVAILABLE."""
    lowered = details.lower()
    if not lowered.startswith(_CONNECT_PREFIXES):
        return None
    for marker, reason in _CONNECT_REASONS:
        if marker in lowered:
            return reason
    return "connection failed"

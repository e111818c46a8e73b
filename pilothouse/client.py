"""The control-plane client: the ControlPlane gRPC API as plain async methods over objects.

Invariants: callers pass and receive object messages (Deployment, Pod …) and `Kind`s, never
request/response messages; every gRPC failure leaves this module as a `ClientError` whose
message a person can act on (`deployments "web" not found`, the field errors one per line,
`cannot reach the control plane at …`). One channel per `Client`; unary calls carry a deadline,
streams (watch, logs) do not.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from pilothouse import kinds
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

DEFAULT_TIMEOUT = 30.0
FIELD_ERRORS_METADATA = "pilothouse-field-errors-bin"
STATUS_DETAILS_METADATA = "grpc-status-details-bin"


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


@dataclass(frozen=True, slots=True)
class FieldProblem:
    file: str
    document: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: document {self.document}: " if self.file else ""
        path = f"{self.field}: " if self.field else ""
        return f"{where}{path}{self.message}"


class ClientError(Exception):
    """A failed call, with a message fit for a person to read."""

    def __init__(
        self, code: ErrorCode, message: str, *, field_errors: tuple[FieldProblem, ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_errors = field_errors


class ApplyResult(enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


class ChangeType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True, slots=True)
class Applied:
    object: Message
    result: ApplyResult


@dataclass(frozen=True, slots=True)
class Listed:
    items: list[Message] = field(default_factory=list)
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    type: ChangeType
    # The object as it is after the change (as it was, for DELETED); None for an empty BOOKMARK.
    object: Message | None
    resource_version: str = ""


_APPLY_RESULTS = {
    api.ApplyResponse.CREATED: ApplyResult.CREATED,
    api.ApplyResponse.CONFIGURED: ApplyResult.CONFIGURED,
    api.ApplyResponse.UNCHANGED: ApplyResult.UNCHANGED,
}
_CHANGE_TYPES = {
    api.WatchEvent.ADDED: ChangeType.ADDED,
    api.WatchEvent.MODIFIED: ChangeType.MODIFIED,
    api.WatchEvent.DELETED: ChangeType.DELETED,
    api.WatchEvent.BOOKMARK: ChangeType.BOOKMARK,
}


class Client:
    """One connection to a control plane. Use as `async with Client(address) as client:`."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """`credentials`: TLS (the cluster CA, and the client certificate for mutual TLS);
        `options`: channel options, e.g. `pilothouse.credentials.channel_options()` so the
        server's certificate is checked for the control plane's name, not the address."""
        self.address = address
        self.timeout = timeout
        self.secure = credentials is not None
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        self._stub = api_grpc.ControlPlaneStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def apply(
        self, obj: Message, *, dry_run: bool = False, field_manager: str = "pilothouse-cli"
    ) -> Applied:
        kind = kinds.of_message(obj)
        request = api.ApplyRequest(
            object=kinds.wrap(obj), dry_run=dry_run, field_manager=field_manager
        )
        with self._errors(kind, obj.metadata.name):  # type: ignore[attr-defined]
            response = await self._stub.Apply(request, timeout=self.timeout)
        result = _APPLY_RESULTS.get(response.result, ApplyResult.CONFIGURED)
        return Applied(object=kinds.unwrap(response.object), result=result)

    async def get(self, kind: Kind, name: str, *, namespace: str = "") -> Message:
        request = api.GetRequest(
            kind=kind.info.plural, namespace=_namespace(kind, namespace), name=name
        )
        with self._errors(kind, name):
            response = await self._stub.Get(request, timeout=self.timeout)
        return kinds.unwrap(response)

    async def list(
        self,
        kind: Kind,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Listed:
        request = api.ListRequest(
            kind=kind.info.plural,
            namespace=namespace if kind.info.namespaced else "",
            label_selector=label_selector,
            field_selector=field_selector,
        )
        with self._errors(kind, ""):
            response = await self._stub.List(request, timeout=self.timeout)
        return Listed(
            items=[kinds.unwrap(item) for item in response.items],
            resource_version=response.resource_version,
        )

    async def delete(
        self, kind: Kind, name: str, *, namespace: str = "", resource_version: str = ""
    ) -> Message | None:
        request = api.DeleteRequest(
            kind=kind.info.plural,
            namespace=_namespace(kind, namespace),
            name=name,
            resource_version=resource_version,
        )
        with self._errors(kind, name):
            response = await self._stub.Delete(request, timeout=self.timeout)
        if response.HasField("object") and response.object.WhichOneof("kind"):
            return kinds.unwrap(response.object)
        return None

    async def watch(
        self,
        kind: Kind,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[Change]:
        """Changes in order; with no resource_version, the current state first as ADDED."""
        request = api.WatchRequest(
            kind=kind.info.plural,
            namespace=namespace if kind.info.namespaced else "",
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
        )
        call = self._stub.Watch(request)
        try:
            with self._errors(kind, ""):
                async for event in call:
                    obj = kinds.unwrap(event.object) if event.object.WhichOneof("kind") else None
                    version = obj.metadata.resource_version if obj is not None else ""  # type: ignore[attr-defined]
                    yield Change(
                        type=_CHANGE_TYPES.get(event.type, ChangeType.MODIFIED),
                        object=obj,
                        resource_version=version,
                    )
        finally:
            call.cancel()

    async def scale(self, kind: Kind, name: str, *, namespace: str = "", replicas: int) -> Message:
        request = api.ScaleRequest(
            kind=kind.info.plural,
            namespace=_namespace(kind, namespace),
            name=name,
            replicas=replicas,
        )
        with self._errors(kind, name):
            response = await self._stub.Scale(request, timeout=self.timeout)
        return kinds.unwrap(response)

    async def logs(
        self,
        pod: str,
        *,
        namespace: str = "",
        container: str = "",
        tail_lines: int = -1,
        follow: bool = False,
        previous: bool = False,
    ) -> AsyncIterator[bytes]:
        request = api.PodLogsRequest(
            namespace=namespace or kinds.DEFAULT_NAMESPACE,
            pod=pod,
            container=container,
            tail_lines=tail_lines,
            follow=follow,
            previous=previous,
        )
        call = self._stub.PodLogs(request)
        try:
            with self._errors(Kind.POD, pod):
                async for chunk in call:
                    yield chunk.data
        finally:
            call.cancel()

    @contextmanager
    def _errors(self, kind: Kind, name: str) -> Iterator[None]:
        try:
            yield
        except grpc.aio.AioRpcError as exc:
            error = translate(exc, kind=kind, name=name, address=self.address)
            if (
                not self.secure
                and error.code is ErrorCode.UNREACHABLE
                and connection_failure(exc.details() or "") == "the connection was closed"
            ):
                error = ClientError(
                    error.code,
                    f"cannot reach the control plane at {self.address}: the connection was "
                    f"closed; {PLAINTEXT_HINT}",
                )
            raise error from exc


def _namespace(kind: Kind, namespace: str) -> str:
    if not kind.info.namespaced:
        return ""
    return namespace or kinds.DEFAULT_NAMESPACE


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


def field_problems(metadata: object) -> tuple[FieldProblem, ...]:
    """Field errors carried in trailing metadata, as the control plane sends them.

    Accepts `pilothouse-field-errors-bin` (a serialized `FieldErrors`) and the standard
    `grpc-status-details-bin` (a `google.rpc.Status` whose details pack a `FieldErrors`).
    """
    for key, value in _pairs(metadata):
        if not isinstance(value, bytes):
            continue
        try:
            if key == FIELD_ERRORS_METADATA:
                return _problems(api.FieldErrors.FromString(value))
            if key == STATUS_DETAILS_METADATA:
                for detail in _status_details(value):
                    if detail.type_url.endswith("pilothouse.v1.FieldErrors"):
                        return _problems(api.FieldErrors.FromString(detail.value))
        except (DecodeError, ValueError, IndexError):
            continue
    return ()


def _pairs(metadata: object) -> list[tuple[str, object]]:
    if metadata is None:
        return []
    pairs: list[tuple[str, object]] = []
    for item in metadata:  # type: ignore[attr-defined]
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        pairs.append((key, value))
    return pairs


def _problems(errors: api.FieldErrors) -> tuple[FieldProblem, ...]:
    return tuple(
        FieldProblem(file=e.file, document=e.document, field=e.field, message=e.message)
        for e in errors.errors
    )


def _status_details(data: bytes) -> list[any_pb2.Any]:
    """The `details` (field 3, repeated Any) of a serialized google.rpc.Status.

    googleapis-common-protos is not a dependency, so the three-field message is read by hand.
    """
    details: list[any_pb2.Any] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            chunk = data[pos : pos + length]
            pos += length
            if number == 3:
                details.append(any_pb2.Any.FromString(chunk))
        else:
            raise ValueError(f"unexpected wire type {wire} in google.rpc.Status")
    return details


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7

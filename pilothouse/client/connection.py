"""`Client`: one channel to a control plane, its API as plain async methods over objects.

Invariants: see the package docstring; every call's gRPC failure is translated in one place
(`_errors`) into a `ClientError`. `address` may name several members of one control plane
("a:7070,b:7070,c:7070"): calls fail over between them (`pilothouse.client.failover`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.message import Message

from pilothouse import kinds
from pilothouse.client import failover
from pilothouse.client.errors import (
    PLAINTEXT_HINT,
    ClientError,
    ErrorCode,
    connection_failure,
    translate,
)
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

DEFAULT_TIMEOUT = 30.0


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


MAX_ANSWER = 64 * 1024**2  # the API server's largest answer (its grpcserver.Limits.max_send)


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
        # A List of a large cluster is one answer of many MiB (30,000 pods: about 26 MiB);
        # gRPC's default would refuse anything over 4 MiB. The API sends up to MAX_ANSWER.
        options = [("grpc.max_receive_message_length", MAX_ANSWER), *options]

        def channel(member: str) -> grpc.aio.Channel:
            if credentials is None:
                return grpc.aio.insecure_channel(member, options=options)
            return grpc.aio.secure_channel(member, credentials, options=options)

        self._members = failover.Members(failover.split(address), channel)
        self._stub = self._members.stub()
        self._controlplanes = self._members.stub(api_grpc.ControlPlanesStub)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._members.close()

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
        self,
        kind: Kind,
        name: str,
        *,
        namespace: str = "",
        resource_version: str = "",
        propagation: str = "",
    ) -> Message | None:
        """Delete; `propagation` is kubectl's --cascade: "Background" (the default),
        "Foreground" or "Orphan"."""
        request = api.DeleteRequest(
            kind=kind.info.plural,
            namespace=_namespace(kind, namespace),
            name=name,
            resource_version=resource_version,
            propagation_policy=propagation,
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

    async def rotate_secrets_key(self) -> api.RotateSecretsKeyResponse:
        """A new primary Secrets encryption key; every Secret is rewritten with it."""
        with self._errors(Kind.SECRET, ""):
            return await self._stub.RotateSecretsKey(
                api.RotateSecretsKeyRequest(), timeout=max(self.timeout, 60.0)
            )

    async def node_images(self, node: str = "") -> api.ListNodeImagesResponse:
        """The images on `node` (or on every node), as their agents list them."""
        with self._errors(Kind.NODE, node):
            return await self._stub.ListNodeImages(
                api.ListNodeImagesRequest(node=node), timeout=self.timeout
            )

    async def controlplanes(self) -> api.ListControlPlanesResponse:
        """The control plane's members, its leader, etcd's health and the leader changes."""
        with self._errors(Kind.NODE, ""):
            return await self._controlplanes.List(
                api.ListControlPlanesRequest(), timeout=self.timeout
            )

    async def logs(
        self,
        pod: str,
        *,
        namespace: str = "",
        container: str = "",
        tail_lines: int = -1,
        follow: bool = False,
        previous: bool = False,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[bytes]:
        request = api.PodLogsRequest(
            namespace=namespace or kinds.DEFAULT_NAMESPACE,
            pod=pod,
            container=container,
            tail_lines=tail_lines,
            follow=follow,
            previous=previous,
            timestamps=timestamps,
        )
        if since is not None:
            request.since_time.FromDatetime(since)
        call = self._stub.PodLogs(request)
        try:
            with self._errors(Kind.POD, pod):
                async for chunk in call:
                    yield chunk.data
        finally:
            call.cancel()

    def service(self, stub_class: type) -> Any:
        """A stub of another service every member serves (PodAccess, ResourceUsage), failing
        over as the ControlPlane stub does; wrap its calls in `errors`."""
        return self._members.stub(stub_class)

    def errors(self, kind: Kind, name: str) -> AbstractContextManager[None]:
        """Turn a failed call about `kind`/`name` into a ClientError (as every method does)."""
        return self._errors(kind, name)

    @contextmanager
    def _errors(self, kind: Kind, name: str) -> Iterator[None]:
        try:
            yield
        except grpc.aio.AioRpcError as exc:
            self._members.unreachable(exc)
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

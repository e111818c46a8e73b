"""The ControlPlane gRPC service: decode the request, call the ObjectStore, encode the answer.

Invariants:
- Nothing here decides anything about objects: storage rules live in `controlplane.objects`,
  manifest rules in `pilothouse.manifests`, status codes in `controlplane.api.errors`.
- Apply accepts exactly what `pilothouse apply` would: the object is defaulted and validated
  (Kubernetes' order: defaults, then validation) before anything is written, and an invalid
  object writes nothing. The API then applies the cluster's policy (`ClusterPolicy`: probe
  hosts and Unconfined seccomp are Forbidden unless the control plane's flags allow them).
- An empty namespace means "default" for one object and "every namespace" for List and Watch.
- A Service's Apply and Delete go through `controlplane.services` (its clusterIP and
  nodePorts are reserved before it is written and released after it is deleted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import structlog
from google.protobuf.message import Message

from controlplane.api import watch
from controlplane.api.errors import Failure, translated
from controlplane.api.hostports import ReservedPorts
from controlplane.api.nodeimages import list_node_images
from controlplane.nodes import conditions
from controlplane.nodes.agent import Connect, connector
from controlplane.objects import (
    ApplyOutcome,
    ChangeType,
    Invalid,
    ObjectStore,
    deletion,
    namespaces,
    wire,
)
from controlplane.services.addresses import ServiceAddresses
from controlplane.store import Conflict
from pilothouse import kinds, manifests
from pilothouse.manifests.problems import ManifestError, Problem
from pilothouse.manifests.validation.policy import ClusterPolicy
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

_OUTCOMES = {
    ApplyOutcome.CREATED: api.ApplyResponse.CREATED,
    ApplyOutcome.CONFIGURED: api.ApplyResponse.CONFIGURED,
    ApplyOutcome.UNCHANGED: api.ApplyResponse.UNCHANGED,
}
_EVENT_TYPES = {
    ChangeType.ADDED: api.WatchEvent.ADDED,
    ChangeType.MODIFIED: api.WatchEvent.MODIFIED,
    ChangeType.DELETED: api.WatchEvent.DELETED,
}
_SCALE_RETRIES = 5
_SCALABLE = (
    kinds.Kind.DEPLOYMENT,
    kinds.Kind.REPLICASET,
    kinds.Kind.REPLICATIONCONTROLLER,
    kinds.Kind.STATEFULSET,
)


class ControlPlaneServicer(api_grpc.ControlPlaneServicer):
    def __init__(
        self,
        objects: ObjectStore,
        *,
        connect: Connect | None = None,
        services: ServiceAddresses | None = None,
        policy: ClusterPolicy | None = None,
        reserved: ReservedPorts | None = None,
    ) -> None:
        self._objects = objects
        # What the cluster's admin allows beyond the syntax (probe hosts, Unconfined seccomp).
        self._policy = policy or ClusterPolicy()
        # The host ports no pod may take (the cluster's own), filled into the policy per object.
        self._reserved = reserved or ReservedPorts(objects)
        self._connect = connect or connector()  # to node agents (PodLogs, ListNodeImages)
        self._services = services or ServiceAddresses(objects)

    async def Apply(
        self, request: api.ApplyRequest, context: grpc.aio.ServicerContext
    ) -> api.ApplyResponse:
        async with translated(context, method="Apply"):
            if not request.HasField("object") or request.object.WhichOneof("kind") is None:
                raise Invalid("Apply needs an object (a Deployment, Pod, Node …)")
            message = kinds.unwrap(request.object)
            manifests.set_defaults(message)
            policy = await self._reserved.policy(self._policy, message)
            problems = manifests.validate(message, policy=policy)
            if problems:
                raise ManifestError(problems)
            # The namespace must exist and not be Terminating (`default` is made on first use).
            await namespaces.admit(self._objects, message)
            if isinstance(message, objects_pb2.Service):
                applied = await self._services.apply(message, dry_run=request.dry_run)
            else:
                applied = await self._objects.apply(message, dry_run=request.dry_run)
            meta = applied.object.metadata
            log.info(
                "object.applied",
                kind=kinds.of_message(message).info.plural,
                namespace=meta.namespace,
                name=meta.name,
                outcome=applied.outcome.value,
                generation=meta.generation,
                dry_run=request.dry_run,
                manager=request.field_manager or None,
            )
            return api.ApplyResponse(
                object=kinds.wrap(applied.object), result=_OUTCOMES[applied.outcome]
            )
        raise AssertionError("unreachable")

    async def Get(self, request: api.GetRequest, context: grpc.aio.ServicerContext) -> Message:
        async with translated(context, method="Get"):
            kind = kinds.parse(request.kind)
            obj = await self._objects.get(kind, request.namespace, _name(request.name))
            return kinds.wrap(obj)
        raise AssertionError("unreachable")

    async def List(
        self, request: api.ListRequest, context: grpc.aio.ServicerContext
    ) -> api.ListResponse:
        async with translated(context, method="List"):
            kind = kinds.parse(request.kind)
            selection = watch.Filter.parse(
                label_selector=request.label_selector, field_selector=request.field_selector
            )
            if not request.label_selector.strip() and not request.field_selector.strip():
                return await _listed(self._objects, kind, request.namespace or None)
            listing = await self._objects.list(kind, request.namespace or None)
            return api.ListResponse(
                items=[kinds.wrap(obj) for obj in listing.items if selection.matches(obj)],
                resource_version=str(listing.revision),
            )
        raise AssertionError("unreachable")

    async def Delete(
        self, request: api.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> api.DeleteResponse:
        async with translated(context, method="Delete"):
            kind = kinds.parse(request.kind)
            # What it owns goes with it (Background: the garbage collector deletes it after;
            # Foreground: before), stays (Orphan); a Namespace or a StatefulSet's pod is
            # Terminating first (see `objects.deletion`).
            deleted = await deletion.delete(
                self._objects,
                kind,
                request.namespace,
                _name(request.name),
                propagation=deletion.Propagation.parse(request.propagation_policy),
                resource_version=request.resource_version or None,
                now=time.time(),
            )
            if isinstance(deleted, objects_pb2.Service):
                await self._services.released(deleted)
            log.info(
                "object.deleted",
                kind=kind.info.plural,
                namespace=deleted.metadata.namespace,
                name=deleted.metadata.name,
            )
            return api.DeleteResponse(object=kinds.wrap(deleted))
        raise AssertionError("unreachable")

    async def Watch(
        self, request: api.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.WatchEvent]:
        async with translated(context, method="Watch"):
            kind = kinds.parse(request.kind)
            selection = watch.Filter.parse(
                label_selector=request.label_selector, field_selector=request.field_selector
            )
            changes = watch.view(
                self._objects,
                kind=kind,
                namespace=request.namespace or None,
                selection=selection,
                resource_version=request.resource_version,
            )
            async for change in changes:
                yield api.WatchEvent(
                    type=_EVENT_TYPES[change.type], object=kinds.wrap(change.object)
                )

    async def RotateSecretsKey(
        self, request: api.RotateSecretsKeyRequest, context: grpc.aio.ServicerContext
    ) -> api.RotateSecretsKeyResponse:
        """A new primary Secrets key (saved to the pki dir first), then every Secret rewritten
        with it; the older keys stay in the file for old backups."""
        async with translated(context, method="RotateSecretsKey"):
            encryption = self._objects.encryption
            if encryption is None:
                raise Failure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "this control plane stores Secrets without encryption: there is no key "
                    "to rotate",
                )
            key = encryption.rotate()
            rewritten = await self._objects.reencrypt(kinds.Kind.SECRET)
            retired = [k.id for k in encryption.keyring.keys[1:]]
            log.info("secrets.rotated", key_id=key.id, rewritten=rewritten)
            return api.RotateSecretsKeyResponse(
                key_id=key.id, secrets_rewritten=rewritten, retired_key_ids=retired
            )
        raise AssertionError("unreachable")

    async def Scale(self, request: api.ScaleRequest, context: grpc.aio.ServicerContext) -> Message:
        async with translated(context, method="Scale"):
            kind = kinds.parse(request.kind)
            if kind not in _SCALABLE:
                raise Invalid(f"{kind.info.plural} cannot be scaled")
            if request.replicas < 0:
                raise ManifestError(
                    [Problem("", 0, "spec.replicas", "must be greater than or equal to 0")]
                )
            return kinds.wrap(await self._scale(kind, request))
        raise AssertionError("unreachable")

    async def PodLogs(
        self, request: api.PodLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.LogChunk]:
        """Proxied to the Logs stream of the agent of the pod's node."""
        async with translated(context, method="PodLogs"):
            pod = await self._objects.get(kinds.Kind.POD, request.namespace, _name(request.pod))
            meta = pod.metadata
            if not pod.spec.node_name:
                raise Failure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f'pod "{meta.name}" has no logs yet: it is not scheduled to a node',
                )
            node = await self._objects.get(kinds.Kind.NODE, "", pod.spec.node_name)
            address = conditions.endpoint(node)
            if address is None:
                raise Failure(
                    grpc.StatusCode.UNAVAILABLE,
                    f'node "{node.metadata.name}" has not registered an agent address',
                )
            async with self._connect(address, node.metadata.name) as agent:
                chunks = agent.logs(
                    namespace=meta.namespace,
                    pod=meta.name,
                    container=request.container,
                    tail_lines=request.tail_lines,
                    follow=request.follow,
                    previous=request.previous,
                    since_time=request.since_time if request.HasField("since_time") else None,
                    timestamps=request.timestamps,
                )
                async for data in chunks:
                    yield api.LogChunk(data=data)

    async def ListNodeImages(
        self, request: api.ListNodeImagesRequest, context: grpc.aio.ServicerContext
    ) -> api.ListNodeImagesResponse:
        """Proxied to the ListImages of each node's agent (`nodeimages`)."""
        async with translated(context, method="ListNodeImages"):
            return await list_node_images(self._objects, connect=self._connect, node=request.node)
        raise AssertionError("unreachable")

    async def _scale(self, kind: kinds.Kind, request: api.ScaleRequest) -> Message:
        for attempt in range(_SCALE_RETRIES):
            current = await self._objects.get(kind, request.namespace, _name(request.name))
            if current.spec.HasField("replicas") and current.spec.replicas == request.replicas:
                return current
            current.spec.replicas = request.replicas
            try:
                scaled = await self._objects.update(current)
            except Conflict:
                if attempt == _SCALE_RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
                continue
            log.info(
                "object.scaled",
                kind=kind.info.plural,
                namespace=scaled.metadata.namespace,
                name=scaled.metadata.name,
                replicas=request.replicas,
            )
            return scaled
        raise AssertionError("unreachable")


_ITEMS = api.ListResponse.DESCRIPTOR.fields_by_name["items"].number
_LIST_VERSION = api.ListResponse.DESCRIPTOR.fields_by_name["resource_version"].number


async def _listed(objects: ObjectStore, kind: kinds.Kind, namespace: str | None) -> Message:
    """A List of everything of `kind`, made from the stored bytes (`objects.wire`): each
    object is parsed once, in C, with the response, never decoded and copied in Python."""
    items, revision = await wire.listed(objects, kind, namespace)
    oneof = objects_pb2.Object.DESCRIPTOR.fields_by_name[kind.info.oneof_field].number
    body = b"".join(wire.field(_ITEMS, wire.field(oneof, item)) for item in items)
    body += wire.field(_LIST_VERSION, str(revision).encode())
    return api.ListResponse.FromString(body)


def _name(name: str) -> str:
    if not name:
        raise Invalid("a name is required")
    return name

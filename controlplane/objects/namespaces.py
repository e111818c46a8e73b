"""Namespaces as the API admits objects into them.

Rules (Kubernetes' NamespaceLifecycle admission):
- an object of a namespaced kind may be created only in a namespace that exists
  (`namespaces "x" not found`, reported as a problem of `metadata.namespace` so the person
  sees which field to fix), and not in one that is Terminating;
- the `default` namespace (and `kube-system`, where the control plane runs its own helper
  pods) exist implicitly: they are created on first use, and kept by the namespace controller.
"""

from __future__ import annotations

import contextlib

from google.protobuf.message import Message

from controlplane.objects.store import Invalid, ObjectStore
from controlplane.store import AlreadyExists, NotFound
from pilothouse.kinds import DEFAULT_NAMESPACE, Kind, of_message
from pilothouse.manifests.problems import ManifestError, Problem
from pilothouse.v1 import objects_pb2

SYSTEM_NAMESPACE = "kube-system"
IMPLICIT = (DEFAULT_NAMESPACE, SYSTEM_NAMESPACE)


class NamespaceTerminating(Invalid):
    """The namespace is being deleted: nothing new may be made in it."""


def new_namespace(name: str) -> objects_pb2.Namespace:
    ns = objects_pb2.Namespace()
    ns.metadata.name = name
    ns.metadata.labels["kubernetes.io/metadata.name"] = name
    ns.spec.finalizers.append("kubernetes")
    ns.status.phase = "Active"
    return ns


async def ensure(objects: ObjectStore, name: str) -> objects_pb2.Namespace:
    """The namespace `name`, created if absent."""
    with contextlib.suppress(NotFound):
        return await objects.get(Kind.NAMESPACE, "", name)
    with contextlib.suppress(AlreadyExists):
        return await objects.create(new_namespace(name))
    return await objects.get(Kind.NAMESPACE, "", name)


async def admit(objects: ObjectStore, message: Message) -> None:
    """Refuse `message` when its namespace does not exist or is Terminating (see module)."""
    kind = of_message(message)
    if not kind.info.namespaced:
        return
    name = message.metadata.namespace or DEFAULT_NAMESPACE
    try:
        namespace = await objects.get(Kind.NAMESPACE, "", name)
    except NotFound:
        if name not in IMPLICIT:
            problem = Problem("", 0, "metadata.namespace", f'namespaces "{name}" not found')
            raise ManifestError([problem]) from None
        namespace = await ensure(objects, name)
    if namespace.metadata.HasField("deletion_timestamp"):
        with contextlib.suppress(NotFound):
            await objects.get(kind, name, message.metadata.name)
            return  # an update of something already there (its controller finishing)
        raise NamespaceTerminating(
            f"unable to create new content in namespace {name} because it is being terminated"
        )

"""The kinds of object Pilothouse stores, and every name a person may call them by.

Invariant: one `Kind` per message type in `pilothouse.v1.objects_pb2` that is stored; the
`Object` oneof field, the store key segment, the apiVersion and the CLI aliases are all derived
from this table and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import Message

from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str  # "Deployment"
    plural: str  # "deployments": the canonical name in APIs and store keys
    api_version: str  # "apps/v1"
    namespaced: bool
    message: type[Message]
    oneof_field: str  # the field of `objects_pb2.Object` carrying it
    aliases: tuple[str, ...]


class Kind(enum.Enum):
    DEPLOYMENT = KindInfo(
        "Deployment",
        "deployments",
        "apps/v1",
        True,
        objects_pb2.Deployment,
        "deployment",
        ("deployment", "deploy"),
    )
    REPLICASET = KindInfo(
        "ReplicaSet",
        "replicasets",
        "apps/v1",
        True,
        objects_pb2.ReplicaSet,
        "replica_set",
        ("replicaset", "rs"),
    )
    POD = KindInfo("Pod", "pods", "v1", True, objects_pb2.Pod, "pod", ("pod", "po"))
    NODE = KindInfo("Node", "nodes", "v1", False, objects_pb2.Node, "node", ("node", "no"))
    EVENT = KindInfo("Event", "events", "v1", True, objects_pb2.Event, "event", ("event", "ev"))
    SERVICE = KindInfo(
        "Service", "services", "v1", True, objects_pb2.Service, "service", ("service", "svc")
    )
    ENDPOINTSLICE = KindInfo(
        "EndpointSlice",
        "endpointslices",
        "discovery.k8s.io/v1",
        True,
        objects_pb2.EndpointSlice,
        "endpoint_slice",
        ("endpointslice",),
    )

    NAMESPACE = KindInfo(
        "Namespace", "namespaces", "v1", False, objects_pb2.Namespace, "namespace", ("ns",)
    )
    SERVICEACCOUNT = KindInfo(
        "ServiceAccount",
        "serviceaccounts",
        "v1",
        True,
        objects_pb2.ServiceAccount,
        "service_account",
        ("serviceaccount", "sa"),
    )
    REPLICATIONCONTROLLER = KindInfo(
        "ReplicationController",
        "replicationcontrollers",
        "v1",
        True,
        objects_pb2.ReplicationController,
        "replication_controller",
        ("replicationcontroller", "rc"),
    )
    JOB = KindInfo("Job", "jobs", "batch/v1", True, objects_pb2.Job, "job", ("job",))
    CRONJOB = KindInfo(
        "CronJob", "cronjobs", "batch/v1", True, objects_pb2.CronJob, "cron_job", ("cj",)
    )
    DAEMONSET = KindInfo(
        "DaemonSet", "daemonsets", "apps/v1", True, objects_pb2.DaemonSet, "daemon_set", ("ds",)
    )
    STATEFULSET = KindInfo(
        "StatefulSet",
        "statefulsets",
        "apps/v1",
        True,
        objects_pb2.StatefulSet,
        "stateful_set",
        ("sts",),
    )
    CONTROLLERREVISION = KindInfo(
        "ControllerRevision",
        "controllerrevisions",
        "apps/v1",
        True,
        objects_pb2.ControllerRevision,
        "controller_revision",
        ("controllerrevision",),
    )
    PERSISTENTVOLUMECLAIM = KindInfo(
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "v1",
        True,
        objects_pb2.PersistentVolumeClaim,
        "persistent_volume_claim",
        ("persistentvolumeclaim", "pvc"),
    )
    PERSISTENTVOLUME = KindInfo(
        "PersistentVolume",
        "persistentvolumes",
        "v1",
        False,
        objects_pb2.PersistentVolume,
        "persistent_volume",
        ("persistentvolume", "pv"),
    )
    STORAGECLASS = KindInfo(
        "StorageClass",
        "storageclasses",
        "storage.k8s.io/v1",
        False,
        objects_pb2.StorageClass,
        "storage_class",
        ("storageclass", "sc"),
    )
    CONFIGMAP = KindInfo(
        "ConfigMap", "configmaps", "v1", True, objects_pb2.ConfigMap, "config_map", ("cm",)
    )
    SECRET = KindInfo("Secret", "secrets", "v1", True, objects_pb2.Secret, "secret", ("secret",))
    HORIZONTALPODAUTOSCALER = KindInfo(
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "autoscaling/v2",
        True,
        objects_pb2.HorizontalPodAutoscaler,
        "horizontal_pod_autoscaler",
        ("horizontalpodautoscaler", "hpa"),
    )

    @property
    def info(self) -> KindInfo:
        return self.value


class UnknownKind(ValueError):
    pass


_BY_NAME: dict[str, Kind] = {}  # every name `parse` accepts (made on first use)
_BY_MESSAGE: dict[type, Kind] = {}  # message class -> Kind (made on first use)


def parse(name: str) -> Kind:
    """Resolve "deploy", "Deployment", "deployments", "deployments.apps" … to a Kind."""
    if not _BY_NAME:
        for kind in reversed(Kind):  # the first Kind naming a word keeps it, as a scan would
            info = kind.info
            _BY_NAME.update(dict.fromkeys((info.plural, info.kind.lower(), *info.aliases), kind))
    found = _BY_NAME.get(name.strip().lower().split(".", 1)[0])
    if found is not None:
        return found
    known = ", ".join(k.info.plural for k in Kind)
    raise UnknownKind(f'unknown resource type "{name}" (known: {known})')


def of_message(message: Message) -> Kind:
    if not _BY_MESSAGE:
        _BY_MESSAGE.update({kind.info.message: kind for kind in reversed(Kind)})
    found = _BY_MESSAGE.get(type(message))
    if found is not None:
        return found
    raise UnknownKind(f"{type(message).__name__} is not a stored kind")


def wrap(message: Message) -> objects_pb2.Object:
    """Put a Deployment, Pod … into the `Object` oneof."""
    obj = objects_pb2.Object()
    getattr(obj, of_message(message).info.oneof_field).CopyFrom(message)
    return obj


def unwrap(obj: objects_pb2.Object) -> Message:
    field = obj.WhichOneof("kind")
    if field is None:
        raise UnknownKind("empty Object: no kind is set")
    return getattr(obj, field)


DEFAULT_NAMESPACE = "default"

"""The built-in local-path provisioner (pure): a directory per volume on one node, as k3s's
local-path-provisioner makes them.

Vocabulary:
- the class: StorageClass `local-path`, provisioner `pilothouse.io/local-path`, the cluster's
  default (annotation storageclass.kubernetes.io/is-default-class), WaitForFirstConsumer, so a
  claim is provisioned on the node its first pod was placed on, reclaim policy Delete;
  parameters `nodePath` (the directory volumes go under on every node: the control plane's
  `--local-path-dir` when it made the class, default `/var/lib/pilothouse/storage`; `up`
  puts it in its data dir) and `helperImage` (what empties a deleted volume);
- a volume: PersistentVolume `pvc-<claim uid>`, hostPath `<nodePath>/pvc-<uid>_<ns>_<claim>`
  (DirectoryOrCreate: the node's agent makes it when a pod first mounts it), node affinity
  to the chosen node, capacity and access modes from the claim;
- the helper pod: deleting a volume of reclaim policy Delete runs a pod on its node that
  removes its directory; the volume goes once that pod succeeded.

Access modes: a directory on one node serves ReadWriteOnce and ReadWriteOncePod only.
"""

from __future__ import annotations

from controlplane.nodes.settings import DEFAULT_LOCAL_PATH_DIR
from controlplane.objects.nodeselectors import for_node
from pilothouse.v1 import objects_pb2

PROVISIONER = "pilothouse.io/local-path"
CLASS_NAME = "local-path"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
DEFAULT_NODE_PATH = DEFAULT_LOCAL_PATH_DIR
DEFAULT_HELPER_IMAGE = "busybox:stable"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bind-completed"
SUPPORTED_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})
HELPER_PREFIX = "helper-pod-delete-"


def builtin_class(node_path: str = DEFAULT_NODE_PATH) -> objects_pb2.StorageClass:
    sc = objects_pb2.StorageClass()
    sc.api_version, sc.kind = "storage.k8s.io/v1", "StorageClass"
    sc.metadata.name = CLASS_NAME
    sc.metadata.annotations[DEFAULT_CLASS] = "true"
    sc.provisioner = PROVISIONER
    sc.reclaim_policy = "Delete"
    sc.volume_binding_mode = "WaitForFirstConsumer"
    sc.parameters["nodePath"] = node_path
    return sc


def is_default(sc: objects_pb2.StorageClass) -> bool:
    return sc.metadata.annotations.get(DEFAULT_CLASS) == "true"


def unsupported_modes(claim: objects_pb2.PersistentVolumeClaim) -> list[str]:
    return [m for m in claim.spec.access_modes if m not in SUPPORTED_MODES]


def volume_name(claim: objects_pb2.PersistentVolumeClaim) -> str:
    return f"pvc-{claim.metadata.uid}"


def volume_for(
    claim: objects_pb2.PersistentVolumeClaim, sc: objects_pb2.StorageClass, *, node: str
) -> objects_pb2.PersistentVolume:
    """The volume provisioned for `claim` on `node`."""
    pv = objects_pb2.PersistentVolume()
    name = volume_name(claim)
    pv.metadata.name = name
    pv.metadata.annotations[PROVISIONED_BY] = PROVISIONER
    pv.metadata.annotations["local.path.provisioner/selected-node"] = node
    root = sc.parameters.get("nodePath", DEFAULT_NODE_PATH).rstrip("/") or "/"
    directory = f"{name}_{claim.metadata.namespace}_{claim.metadata.name}"
    pv.spec.host_path.path = f"{root}/{directory}"
    pv.spec.host_path.type = "DirectoryOrCreate"
    pv.spec.capacity["storage"] = claim.spec.resources.requests.get("storage", "0")
    pv.spec.access_modes.extend(claim.spec.access_modes)
    pv.spec.persistent_volume_reclaim_policy = sc.reclaim_policy or "Delete"
    pv.spec.storage_class_name = sc.metadata.name
    pv.spec.volume_mode = "Filesystem"
    pv.spec.node_affinity.CopyFrom(for_node(node))
    pv.spec.claim_ref.CopyFrom(claim_reference(claim))
    pv.status.phase = "Bound"
    return pv


def claim_reference(claim: objects_pb2.PersistentVolumeClaim) -> objects_pb2.ObjectReference:
    return objects_pb2.ObjectReference(
        api_version="v1",
        kind="PersistentVolumeClaim",
        namespace=claim.metadata.namespace,
        name=claim.metadata.name,
        uid=claim.metadata.uid,
    )


def node_of(pv: objects_pb2.PersistentVolume) -> str | None:
    """The one node a volume's affinity names (by name or hostname), if it names one."""
    for term in pv.spec.node_affinity.required.node_selector_terms:
        for req in [*term.match_fields, *term.match_expressions]:
            if (
                req.key in ("metadata.name", "kubernetes.io/hostname")
                and req.operator == "In"
                and len(req.values) == 1
            ):
                return req.values[0]
    return None


def path_of(pv: objects_pb2.PersistentVolume) -> str:
    return pv.spec.host_path.path or pv.spec.local.path


def helper_pod(
    pv: objects_pb2.PersistentVolume, sc: objects_pb2.StorageClass | None, *, namespace: str
) -> objects_pb2.Pod | None:
    """The pod that removes a local-path volume's directory on its node (None if the volume
    names no node or directory)."""
    node, path = node_of(pv), path_of(pv)
    if node is None or not path or path.rstrip("/") in ("", "/"):
        return None
    parent, _, leaf = path.rstrip("/").rpartition("/")
    pod = objects_pb2.Pod()
    pod.metadata.name = f"{HELPER_PREFIX}{pv.metadata.name}"[:253]
    pod.metadata.namespace = namespace
    pod.metadata.labels["app.kubernetes.io/managed-by"] = "pilothouse-local-path"
    pod.spec.node_name = node
    pod.spec.restart_policy = "Never"
    image = DEFAULT_HELPER_IMAGE
    if sc is not None:
        image = sc.parameters.get("helperImage", image)
    container = pod.spec.containers.add(name="helper", image=image)
    container.command.extend(["rm", "-rf", f"/volumes/{leaf}"])
    container.volume_mounts.add(name="volumes", mount_path="/volumes")
    volume = pod.spec.volumes.add(name="volumes")
    volume.host_path.path = parent or "/"
    volume.host_path.type = "DirectoryOrCreate"
    return pod

"""A pod's persistent volume claims as the scheduler sees them (pure): may it be placed yet,
where, and what the node must mount.

Rules (Kubernetes' VolumeBinding and VolumeRestrictions plugins, reduced to local volumes):
- a claim that does not exist, or is being deleted, blocks the pod
  (`persistentvolumeclaim "x" not found`);
- a claim bound to a volume restricts the pod to the nodes of that volume's node affinity,
  and its path is what the node mounts;
- an unbound claim whose class binds WaitForFirstConsumer (the local-path class) does not
  restrict the pod: the node chosen for the pod is written on the claim
  (`volume.kubernetes.io/selected-node`), the claim is provisioned there, and the pod is bound
  only once every claim is bound;
- any other unbound claim blocks the pod (`pod has unbound immediate PersistentVolumeClaims`);
- a ReadWriteOncePod claim already used by another active pod blocks the pod.

`Resolved.annotations` are what the scheduler writes on the pod as it binds it: one
`pilothouse.io/volume.<volume name>` per claim volume, the volume's path on the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controlplane.objects.nodeselectors import for_node
from pilothouse.v1 import objects_pb2

RESOLVED_PREFIX = "pilothouse.io/volume."
SELECTED_NODE = "volume.kubernetes.io/selected-node"

ClaimLookup = Callable[[str, str], objects_pb2.PersistentVolumeClaim | None]
VolumeLookup = Callable[[str], objects_pb2.PersistentVolume | None]
ClassLookup = Callable[[str], objects_pb2.StorageClass | None]


@dataclass(frozen=True, slots=True)
class Blocked:
    message: str


@dataclass(frozen=True, slots=True)
class Resolved:
    constraints: tuple[objects_pb2.NodeSelector, ...] = ()
    unbound: tuple[objects_pb2.PersistentVolumeClaim, ...] = ()  # WaitForFirstConsumer
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Every claim is bound: the pod may be bound now."""
        return not self.unbound


def claim_volumes(pod: objects_pb2.Pod) -> list[tuple[str, str]]:
    """(volume name, claim name) of the pod's persistentVolumeClaim volumes."""
    return [
        (v.name, v.persistent_volume_claim.claim_name)
        for v in pod.spec.volumes
        if v.HasField("persistent_volume_claim")
    ]


def resolve(
    pod: objects_pb2.Pod,
    *,
    claims: ClaimLookup,
    volumes: VolumeLookup,
    classes: ClassLookup,
    users: Callable[[str, str], Iterable[objects_pb2.Pod]],
) -> Blocked | Resolved:
    """What the pod's claims allow (see the module). `users(namespace, claim)` lists the
    active pods using a claim."""
    namespace = pod.metadata.namespace
    constraints: list[objects_pb2.NodeSelector] = []
    unbound: list[objects_pb2.PersistentVolumeClaim] = []
    annotations: dict[str, str] = {}
    for volume_name, claim_name in claim_volumes(pod):
        claim = claims(namespace, claim_name)
        if claim is None or claim.metadata.HasField("deletion_timestamp"):
            return Blocked(f'persistentvolumeclaim "{claim_name}" not found')
        if "ReadWriteOncePod" in claim.spec.access_modes:
            others = [p for p in users(namespace, claim_name) if p.metadata.uid != pod.metadata.uid]
            if others:
                return Blocked(
                    "node(s) unavailable due to one or more pvc(s) bound to non-schedulable "
                    f"nodes: claim {claim_name} (ReadWriteOncePod) is in use by pod "
                    f"{others[0].metadata.name}"
                )
        bound = volumes(claim.spec.volume_name) if claim.spec.volume_name else None
        if bound is not None and claim.status.phase == "Bound":
            if bound.spec.node_affinity.HasField("required"):
                constraints.append(bound.spec.node_affinity.required)
            path = bound.spec.host_path.path or bound.spec.local.path
            if path:
                annotations[RESOLVED_PREFIX + volume_name] = path
            continue
        sc = classes(claim.spec.storage_class_name) if claim.spec.storage_class_name else None
        if sc is not None and sc.volume_binding_mode == "WaitForFirstConsumer":
            unbound.append(claim)
            selected = claim.metadata.annotations.get(SELECTED_NODE)
            if selected:  # being provisioned there: stay with it
                constraints.append(for_node(selected).required)
            continue
        return Blocked("pod has unbound immediate PersistentVolumeClaims")
    return Resolved(constraints=tuple(constraints), unbound=tuple(unbound), annotations=annotations)

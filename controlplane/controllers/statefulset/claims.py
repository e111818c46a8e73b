"""A StatefulSet's volume claims: one PersistentVolumeClaim per claim template and ordinal.

Rules (apps/v1):
- the claim of template `data` for pod `web-1` is `data-web-1`, labelled with the set's
  selector labels; it is made before the pod and is never replaced while it exists, so a
  re-made `web-1` mounts the same volume (and, with a local volume, lands on its node);
- the pod's volume `data` refers to it (`persistentVolumeClaim.claimName`), replacing any
  template volume of that name;
- retention (`persistentVolumeClaimRetentionPolicy`): whenDeleted Delete makes the set an
  owner of its claims (the garbage collector deletes them with it); whenScaled Delete has the
  claims of ordinals at or above `replicas` deleted once their pods are gone. Retain (the
  default) keeps them.
"""

from __future__ import annotations

import contextlib

from controlplane.objects.podtemplate import owner_reference
from controlplane.objects.store import ObjectStore
from controlplane.store import AlreadyExists, NotFound
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2


def claim_name(template: objects_pb2.PersistentVolumeClaim, pod_name: str) -> str:
    return f"{template.metadata.name}-{pod_name}"


def claim_for(
    sts: objects_pb2.StatefulSet, template: objects_pb2.PersistentVolumeClaim, pod_name: str
) -> objects_pb2.PersistentVolumeClaim:
    claim = objects_pb2.PersistentVolumeClaim()
    claim.metadata.name = claim_name(template, pod_name)
    claim.metadata.namespace = sts.metadata.namespace
    claim.metadata.labels.update(template.metadata.labels)
    claim.metadata.labels.update(sts.spec.selector.match_labels)
    claim.metadata.annotations.update(template.metadata.annotations)
    claim.spec.CopyFrom(template.spec)
    if sts.spec.persistent_volume_claim_retention_policy.when_deleted == "Delete":
        ref = owner_reference(sts)
        ref.controller = False
        claim.metadata.owner_references.append(ref)
    manifests.set_defaults(claim)
    claim.status.phase = "Pending"
    return claim


async def ensure_claims(objects: ObjectStore, sts: objects_pb2.StatefulSet, pod_name: str) -> None:
    """Create the pod's claims that do not exist yet (an existing claim is kept as it is)."""
    for template in sts.spec.volume_claim_templates:
        with contextlib.suppress(AlreadyExists):
            await objects.create(claim_for(sts, template, pod_name))


def attach(pod: objects_pb2.Pod, sts: objects_pb2.StatefulSet) -> None:
    """Point the pod's volumes at its claims."""
    for template in sts.spec.volume_claim_templates:
        name = template.metadata.name
        kept = [v for v in pod.spec.volumes if v.name != name]
        del pod.spec.volumes[:]
        pod.spec.volumes.extend(kept)
        volume = pod.spec.volumes.add(name=name)
        volume.persistent_volume_claim.claim_name = claim_name(template, pod.metadata.name)


async def delete_claims(objects: ObjectStore, sts: objects_pb2.StatefulSet, pod_name: str) -> None:
    for template in sts.spec.volume_claim_templates:
        with contextlib.suppress(NotFound):
            await objects.delete(
                Kind.PERSISTENTVOLUMECLAIM, sts.metadata.namespace, claim_name(template, pod_name)
            )

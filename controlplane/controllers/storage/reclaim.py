"""Volumes after their claims: Bound while the claim exists, then Released, then reclaimed.

Rules (Kubernetes' PV controller, with the local-path provisioner's deleter):
- a volume with no claimRef is Available; with a claim that exists (same uid), Bound;
- once its claim is gone (confirmed with a read from the store) it is Released; reclaim
  policy Retain keeps it so; Delete deletes it once no pod mounts the claim any more (as
  Kubernetes' pvc-protection keeps a claim in use), and a local-path volume's directory is first
  removed on its node by a helper pod (in kube-system, `rm -rf` of the directory), the volume
  going once that pod succeeded (a failed helper: a VolumeFailedDelete event, then another).
"""

from __future__ import annotations

import contextlib

import structlog
from google.protobuf.message import Message

from controlplane.cache.informer import Informer
from controlplane.controllers.storage import localpath
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore
from controlplane.objects.namespaces import SYSTEM_NAMESPACE, ensure
from controlplane.reconcile import Result
from controlplane.store import AlreadyExists, NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

HELPER_RECHECK = 2.0  # s between looks at a volume's helper pod


class VolumeReclaimer:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        claims: Informer,
        classes: Informer,
        pods: Informer,
        events: EventRecorder | None,
    ) -> None:
        self._objects = objects
        self._claims = claims
        self._classes = classes
        self._pods = pods
        self._events = events

    async def reconcile(self, volume: objects_pb2.PersistentVolume) -> Result:
        ref = volume.spec.claim_ref
        if not ref.name:
            return await self._volume_phase(volume, "Available")
        claim = self._claims.get(ref.namespace, ref.name)
        if claim is not None and (not ref.uid or claim.metadata.uid == ref.uid):
            return await self._volume_phase(volume, "Bound")
        if claim is None:
            try:  # confirm with the store: the claim informer may lag a fresh claim
                fresh = await self._objects.get(Kind.PERSISTENTVOLUMECLAIM, ref.namespace, ref.name)
                if not ref.uid or fresh.metadata.uid == ref.uid:
                    return Result()
            except NotFound:
                pass
        await self._volume_phase(volume, "Released")
        if volume.spec.persistent_volume_reclaim_policy != "Delete":
            return Result()
        return await self._reclaim(volume)

    async def _reclaim(self, volume: objects_pb2.PersistentVolume) -> Result:
        """Delete policy: a local-path volume's directory is removed first, then it goes;
        never while a pod still mounts its claim (Kubernetes' pvc-protection)."""
        name = volume.metadata.name
        if self._in_use(volume):
            return Result(requeue_after=HELPER_RECHECK)
        if volume.metadata.annotations.get(localpath.PROVISIONED_BY) != localpath.PROVISIONER:
            await self._delete_volume(volume)
            return Result()
        helper_name = f"{localpath.HELPER_PREFIX}{name}"
        helper = self._pods.get(SYSTEM_NAMESPACE, helper_name)
        if helper is None:
            sc = self._classes.get("", volume.spec.storage_class_name)
            pod = localpath.helper_pod(volume, sc, namespace=SYSTEM_NAMESPACE)
            if pod is None:
                await self._delete_volume(volume)
                return Result()
            await ensure(self._objects, SYSTEM_NAMESPACE)
            with contextlib.suppress(AlreadyExists):
                await self._objects.create(pod)
            return Result(requeue_after=HELPER_RECHECK)
        if helper.status.phase == "Succeeded":
            await self._delete_volume(volume)
            with contextlib.suppress(NotFound):
                await self._objects.delete(Kind.POD, SYSTEM_NAMESPACE, helper_name)
            return Result()
        if helper.status.phase == "Failed":
            await self._warn(
                volume,
                "VolumeFailedDelete",
                f"the helper pod {helper_name} failed to remove {localpath.path_of(volume)}",
            )
            with contextlib.suppress(NotFound):
                await self._objects.delete(Kind.POD, SYSTEM_NAMESPACE, helper_name)
        return Result(requeue_after=HELPER_RECHECK)

    def _in_use(self, volume: objects_pb2.PersistentVolume) -> bool:
        ref = volume.spec.claim_ref
        for pod in self._pods.list(ref.namespace):
            if pod.status.phase in ("Succeeded", "Failed"):
                continue
            for v in pod.spec.volumes:
                if v.HasField("persistent_volume_claim") and (
                    v.persistent_volume_claim.claim_name == ref.name
                ):
                    return True
        return False

    async def _delete_volume(self, volume: objects_pb2.PersistentVolume) -> None:
        with contextlib.suppress(NotFound):
            await self._objects.delete(
                Kind.PERSISTENTVOLUME,
                "",
                volume.metadata.name,
                resource_version=volume.metadata.resource_version,
            )
            log.info("volume.deleted", volume=volume.metadata.name)

    async def _volume_phase(self, volume: objects_pb2.PersistentVolume, phase: str) -> Result:
        if volume.status.phase != phase:
            updated = objects_pb2.PersistentVolume()
            updated.CopyFrom(volume)
            updated.status.phase = phase
            with contextlib.suppress(NotFound):
                await self._objects.update_status(updated)
        return Result()

    async def _warn(self, obj: Message, reason: str, message: str) -> None:
        if self._events is not None:
            await self._events.record(obj, EventType.WARNING, reason, message)

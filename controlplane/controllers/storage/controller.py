"""The storage controller: claims bound to volumes, volumes provisioned and reclaimed.

Keys: "claim:<namespace>/<name>", "volume:<name>", "pod:<namespace>/<name>" (a pod bound
without the scheduler, `prebound`), and "@class" (the built-in class, its nodePath the
control plane's `--local-path-dir`).

A claim (Kubernetes' PV controller and the local-path provisioner):
1. bound already (spec.volumeName, and that volume's claimRef is this claim): status Bound,
   with the volume's capacity and access modes;
2. no storageClassName: the default class, if there is one, is written into it (as Kubernetes'
   retroactive default class assignment does); `""` means "only a volume made by hand";
3. a class that does not exist: Pending, with a Warning ProvisioningFailed event
   `storageclass.storage.k8s.io "x" not found`;
4. an Available volume made by hand that fits (class, access modes, capacity; and, waiting for
   a consumer, the selected node): bound to it, the volume first;
5. the local-path provisioner's class: with WaitForFirstConsumer, nothing until the scheduler
   has chosen a node for its first pod (`volume.kubernetes.io/selected-node`, an event
   WaitForFirstConsumer meanwhile); with Immediate, the first Ready node; access modes other
   than ReadWriteOnce(Pod) are refused with an event; then the volume is made on that node and
   the claim bound to it.

A volume: `reclaim.VolumeReclaimer` (Bound while its claim exists, then Released, then
deleted or retained by its reclaim policy).

Invariants: every write is compare-and-swap or create-if-absent; the volume of a claim is
named after the claim's uid, so a retry after a crash finds it instead of making another.
"""

from __future__ import annotations

import contextlib

import structlog
from google.protobuf.message import Message

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.storage import localpath, prebound
from controlplane.controllers.storage.reclaim import VolumeReclaimer
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ChangeType, ObjectStore
from controlplane.objects.nodeselectors import matches as node_matches
from controlplane.reconcile import Result
from controlplane.reconcile.controller import Controller
from controlplane.store import AlreadyExists, Conflict, NotFound
from pilothouse import quantity
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

CLASS_KEY = "@class"


class StorageReconciler:
    def __init__(
        self,
        objects: ObjectStore,
        *,
        claims: Informer,
        volumes: Informer,
        classes: Informer,
        nodes: Informer,
        pods: Informer,
        events: EventRecorder | None = None,
        builtin_class: bool = True,
        node_path: str = localpath.DEFAULT_NODE_PATH,
    ) -> None:
        self._objects = objects
        self._claims = claims
        self._volumes = volumes
        self._classes = classes
        self._nodes = nodes
        self._pods = pods
        self._events = events
        self._builtin = builtin_class
        self._node_path = node_path
        self._reclaimer = VolumeReclaimer(
            objects, claims=claims, classes=classes, pods=pods, events=events
        )
        self._prebound = prebound.PreboundPods(
            objects=objects,
            claims=claims,
            volumes=volumes,
            classes=classes,
            nodes=nodes,
            pods=pods,
            events=events,
        )

    def keys_for(self, notice: Notice) -> list[str]:
        obj = notice.object
        if isinstance(obj, objects_pb2.PersistentVolumeClaim):
            keys = [f"claim:{obj.metadata.namespace}/{obj.metadata.name}"]
            if notice.type is ChangeType.DELETED and obj.spec.volume_name:
                keys.append(f"volume:{obj.spec.volume_name}")
            keys.extend(self._prebound.keys_for_claim(obj))
            return keys
        if isinstance(obj, objects_pb2.PersistentVolume):
            keys = [f"volume:{obj.metadata.name}"]
            ref = obj.spec.claim_ref
            if ref.name:
                keys.append(f"claim:{ref.namespace}/{ref.name}")
            return keys
        if isinstance(obj, objects_pb2.StorageClass):
            keys = [
                f"claim:{c.metadata.namespace}/{c.metadata.name}"
                for c in self._claims.list()
                if c.status.phase != "Bound"
            ]
            if notice.type is ChangeType.DELETED and obj.metadata.name == localpath.CLASS_NAME:
                keys.append(CLASS_KEY)
            return keys
        if not isinstance(obj, objects_pb2.Pod):
            return []
        keys = [prebound.key(obj)] if prebound.waiting(obj) else []
        if obj.metadata.name.startswith(localpath.HELPER_PREFIX):
            keys.append(f"volume:{obj.metadata.name.removeprefix(localpath.HELPER_PREFIX)}")
        return keys

    async def reconcile(self, key: str) -> Result:
        if key == CLASS_KEY:
            if self._builtin:
                with contextlib.suppress(AlreadyExists):
                    await self._objects.create(localpath.builtin_class(self._node_path))
            return Result()
        what, _, rest = key.partition(":")
        if what == "pod":
            await self._prebound.reconcile(rest)
            return Result()
        if what == "claim":
            namespace, name = rest.split("/", 1)
            claim = self._claims.get(namespace, name)
            return await self._claim(claim) if claim is not None else Result()
        volume = self._volumes.get("", rest)
        return await self._reclaimer.reconcile(volume) if volume is not None else Result()

    # ------------------------------------------------------------------ claims

    async def _claim(self, claim: objects_pb2.PersistentVolumeClaim) -> Result:
        if claim.metadata.HasField("deletion_timestamp"):
            return Result()
        if claim.spec.volume_name:
            volume = self._volumes.get("", claim.spec.volume_name)
            if volume is not None and volume.spec.claim_ref.uid in ("", claim.metadata.uid):
                if not volume.spec.claim_ref.uid:
                    await self._bind_volume(volume, claim)
                await self._mark_bound(claim, volume)
            else:
                await self._claim_phase(claim, "Pending" if volume is None else "Lost")
            return Result()
        if not claim.spec.HasField("storage_class_name"):
            default = next((c for c in self._classes.list() if localpath.is_default(c)), None)
            if default is not None:
                updated = objects_pb2.PersistentVolumeClaim()
                updated.CopyFrom(claim)
                updated.spec.storage_class_name = default.metadata.name
                with contextlib.suppress(Conflict, NotFound):
                    await self._objects.update(updated)
                return Result()
        class_name = claim.spec.storage_class_name
        sc = self._classes.get("", class_name) if class_name else None
        if class_name and sc is None:
            await self._claim_phase(claim, "Pending")
            await self._warn(
                claim, "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found'
            )
            return Result()
        waiting = sc is not None and sc.volume_binding_mode == "WaitForFirstConsumer"
        node = claim.metadata.annotations.get(localpath.SELECTED_NODE, "")
        static = self._matching_volume(claim, node=node if waiting else "")
        if static is not None and (not waiting or node):
            await self._bind_volume(static, claim)
            await self._mark_bound(claim, static)
            return Result()
        await self._claim_phase(claim, "Pending")
        if sc is None or sc.provisioner != localpath.PROVISIONER:
            return Result()  # a hand-made volume, or an external provisioner, is awaited
        unsupported = localpath.unsupported_modes(claim)
        if unsupported:
            await self._warn(
                claim,
                "ProvisioningFailed",
                f"the local-path provisioner supports only ReadWriteOnce and ReadWriteOncePod "
                f"access modes, not {', '.join(unsupported)}",
            )
            return Result()
        if waiting and not node:
            await self._event(
                claim,
                EventType.NORMAL,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            return Result()
        if not node:
            node = self._any_ready_node()
            if not node:
                await self._warn(claim, "ProvisioningFailed", "no Ready node to provision on")
                return Result()
        volume = localpath.volume_for(claim, sc, node=node)
        try:
            created = await self._objects.create(volume)
            await self._event(
                claim,
                EventType.NORMAL,
                "ProvisioningSucceeded",
                f"Successfully provisioned volume {volume.metadata.name} on node {node}",
            )
            log.info("volume.provisioned", volume=volume.metadata.name, node=node)
        except AlreadyExists:
            created = await self._objects.get(Kind.PERSISTENTVOLUME, "", volume.metadata.name)
        await self._mark_bound(claim, created)
        return Result()

    def _matching_volume(
        self, claim: objects_pb2.PersistentVolumeClaim, *, node: str
    ) -> objects_pb2.PersistentVolume | None:
        wanted = _size(claim.spec.resources.requests.get("storage", "0"))
        node_obj = self._nodes.get("", node) if node else None
        best: tuple[int, str] | None = None
        found = None
        for volume in self._volumes.list():
            ref = volume.spec.claim_ref
            if ref.uid and ref.uid != claim.metadata.uid:
                continue
            if ref.name and (ref.namespace, ref.name) != (
                claim.metadata.namespace,
                claim.metadata.name,
            ):
                continue
            if volume.spec.storage_class_name != claim.spec.storage_class_name:
                continue
            if volume.status.phase in ("Released", "Failed"):
                continue
            if not set(claim.spec.access_modes) <= set(volume.spec.access_modes):
                continue
            size = _size(volume.spec.capacity.get("storage", "0"))
            if size < wanted:
                continue
            if node_obj is not None and not node_matches(
                volume.spec.node_affinity.required, node_obj
            ):
                continue
            rank = (size, volume.metadata.name)
            if best is None or rank < best:
                best, found = rank, volume
        return found

    def _any_ready_node(self) -> str:
        for node in sorted(self._nodes.list(), key=lambda n: n.metadata.name):
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
            if ready and not node.spec.unschedulable:
                return node.metadata.name
        return ""

    async def _bind_volume(
        self, volume: objects_pb2.PersistentVolume, claim: objects_pb2.PersistentVolumeClaim
    ) -> None:
        updated = objects_pb2.PersistentVolume()
        updated.CopyFrom(volume)
        updated.spec.claim_ref.CopyFrom(localpath.claim_reference(claim))
        written = await self._objects.update(updated)
        if written.status.phase != "Bound":
            written.status.phase = "Bound"
            await self._objects.update_status(written)

    async def _mark_bound(
        self, claim: objects_pb2.PersistentVolumeClaim, volume: objects_pb2.PersistentVolume
    ) -> None:
        current = claim
        if current.spec.volume_name != volume.metadata.name:
            updated = objects_pb2.PersistentVolumeClaim()
            updated.CopyFrom(claim)
            updated.spec.volume_name = volume.metadata.name
            updated.metadata.annotations[localpath.BOUND_BY_CONTROLLER] = "yes"
            current = await self._objects.update(updated)
        status = objects_pb2.PersistentVolumeClaimStatus()
        status.CopyFrom(current.status)
        status.phase = "Bound"
        del status.access_modes[:]
        status.access_modes.extend(volume.spec.access_modes)
        status.capacity.clear()
        status.capacity.update(volume.spec.capacity)
        if status != current.status:
            current.status.CopyFrom(status)
            await self._objects.update_status(current)
            log.info(
                "claim.bound",
                claim=f"{claim.metadata.namespace}/{claim.metadata.name}",
                volume=volume.metadata.name,
            )

    async def _claim_phase(self, claim: objects_pb2.PersistentVolumeClaim, phase: str) -> None:
        if claim.status.phase == phase:
            return
        updated = objects_pb2.PersistentVolumeClaim()
        updated.CopyFrom(claim)
        updated.status.phase = phase
        with contextlib.suppress(NotFound):
            await self._objects.update_status(updated)

    # ------------------------------------------------------------------ events

    async def _warn(self, obj: Message, reason: str, message: str) -> None:
        await self._event(obj, EventType.WARNING, reason, message)

    async def _event(self, obj: Message, type_: EventType, reason: str, message: str) -> None:
        if self._events is not None:
            await self._events.record(obj, type_, reason, message)


def _size(amount: str) -> int:
    try:
        return int(quantity.parse(amount))
    except quantity.QuantityError:
        return 0


def storage_controller(
    objects: ObjectStore,
    *,
    claims: Informer,
    volumes: Informer,
    classes: Informer,
    nodes: Informer,
    pods: Informer,
    events: EventRecorder | None = None,
    builtin_class: bool = True,
    node_path: str = localpath.DEFAULT_NODE_PATH,
    workers: int = 2,
) -> Controller:
    """Claims, volumes and the local-path provisioner; makes the built-in `local-path` class
    (volumes under `node_path` on every node) when `builtin_class` and it is missing."""
    reconciler = StorageReconciler(
        objects,
        claims=claims,
        volumes=volumes,
        classes=classes,
        nodes=nodes,
        pods=pods,
        events=events,
        builtin_class=builtin_class,
        node_path=node_path,
    )
    controller = Controller(
        "controller.storage",
        reconciler,
        workers=workers,
        wait_for=(claims, volumes, classes, nodes, pods),
    )
    if builtin_class:
        controller.enqueue(CLASS_KEY)
    controller.follow((claims, volumes, classes, pods), reconciler.keys_for)
    return controller

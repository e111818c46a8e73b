"""Claims of pods that never pass the scheduler: pods made with a node already (`nodeName`),
as DaemonSet pods and the local-path helper pods are.

The scheduler binds a pod only once its claims are bound, and writes on it, per claim volume,
the volume's path on the node (`pilothouse.io/volume.<volume>`), which is what the node's
agent mounts. For a *pre-bound* pod (a node name, not finished, not being deleted, a claim
volume without that annotation) this module does the scheduler's part for the pod's node:
- an unbound claim whose class binds WaitForFirstConsumer, with no node selected yet, gets
  the pod's node (`volume.kubernetes.io/selected-node`): the claim reconciler provisions it
  there (Immediate claims are provisioned or bound by the claim reconciler on its own);
- a bound claim whose volume may be used on the pod's node (its node affinity): the volume's
  path is written on the pod, all of its volumes' in one compare-and-swap write;
- a claim held elsewhere (its volume's node, or the node selected for it, is another): a
  Warning event on the pod, and nothing written.
Meanwhile the agent keeps the pod's containers in ContainerCreating and mounts the volume as
soon as a push brings the annotation.

Keys: "pod:<namespace>/<name>". A claim that changes wakes the pre-bound pods waiting for it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import structlog

from controlplane.cache.informer import Informer
from controlplane.controllers.storage import localpath
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore
from controlplane.objects.nodeselectors import matches as node_matches
from controlplane.store import Conflict, NotFound
from pilothouse.manifests.validation.volumes import RESOLVED_PREFIX
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

KEY_PREFIX = "pod:"


def claim_volumes(pod: objects_pb2.Pod) -> list[tuple[str, str]]:
    """(volume name, claim name) of the pod's persistentVolumeClaim volumes."""
    return [
        (v.name, v.persistent_volume_claim.claim_name)
        for v in pod.spec.volumes
        if v.HasField("persistent_volume_claim")
    ]


def waiting(pod: objects_pb2.Pod) -> list[tuple[str, str]]:
    """The claim volumes of a pre-bound pod that have no node path yet (none: not waiting)."""
    if (
        not pod.spec.node_name
        or pod.metadata.HasField("deletion_timestamp")
        or pod.status.phase in ("Succeeded", "Failed")
    ):
        return []
    return [
        (volume, claim)
        for volume, claim in claim_volumes(pod)
        if RESOLVED_PREFIX + volume not in pod.metadata.annotations
    ]


def key(pod: objects_pb2.Pod) -> str:
    return f"{KEY_PREFIX}{pod.metadata.namespace}/{pod.metadata.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreboundPods:
    """The storage reconciler's part for pre-bound pods (its store, caches and events)."""

    objects: ObjectStore
    claims: Informer
    volumes: Informer
    classes: Informer
    nodes: Informer
    pods: Informer
    events: EventRecorder | None

    def keys_for_claim(self, claim: objects_pb2.PersistentVolumeClaim) -> list[str]:
        """The pre-bound pods that wait for `claim`."""
        name = claim.metadata.name
        return [
            key(pod)
            for pod in self.pods.list(claim.metadata.namespace)
            if any(c == name for _, c in waiting(pod))
        ]

    async def reconcile(self, rest: str) -> None:
        namespace, name = rest.split("/", 1)
        pod = self.pods.get(namespace, name)
        if pod is None:
            return
        node = pod.spec.node_name
        paths: dict[str, str] = {}
        for volume_name, claim_name in waiting(pod):
            claim = self.claims.get(namespace, claim_name)
            if claim is None or claim.metadata.HasField("deletion_timestamp"):
                continue  # the agent says so (FailedMount); the claim's arrival wakes us
            if claim.spec.volume_name and claim.status.phase == "Bound":
                volume = self.volumes.get("", claim.spec.volume_name)
                if volume is None:
                    continue
                if not self._usable_on(volume, node):
                    await self._conflict(
                        pod,
                        f'persistentvolumeclaim "{claim_name}" is bound to volume '
                        f'"{volume.metadata.name}", which node "{node}" cannot use '
                        "(volume node affinity conflict)",
                    )
                    continue
                path = localpath.path_of(volume)
                if path:
                    paths[RESOLVED_PREFIX + volume_name] = path
                continue
            await self._select(pod, claim)
        if paths:
            await self._annotate(pod, paths)

    def _usable_on(self, volume: objects_pb2.PersistentVolume, node: str) -> bool:
        node_obj = self.nodes.get("", node)
        if node_obj is not None:
            return node_matches(volume.spec.node_affinity.required, node_obj)
        pinned = localpath.node_of(volume)
        return pinned is None or pinned == node

    async def _select(self, pod: objects_pb2.Pod, claim: objects_pb2.PersistentVolumeClaim) -> None:
        """A WaitForFirstConsumer claim is provisioned on the pre-bound pod's node."""
        sc = self.classes.get("", claim.spec.storage_class_name)
        if sc is None or sc.volume_binding_mode != "WaitForFirstConsumer":
            return
        node = pod.spec.node_name
        selected = claim.metadata.annotations.get(localpath.SELECTED_NODE, "")
        if selected == node:
            return
        if selected:
            await self._conflict(
                pod,
                f'persistentvolumeclaim "{claim.metadata.name}" is being provisioned on node '
                f'"{selected}", not on this pod\'s node "{node}"',
            )
            return
        updated = objects_pb2.PersistentVolumeClaim()
        updated.CopyFrom(claim)
        updated.metadata.annotations[localpath.SELECTED_NODE] = node
        with contextlib.suppress(NotFound, Conflict):  # a newer claim is looked at again
            await self.objects.update(updated)
            log.info(
                "claim.node_selected",
                claim=f"{claim.metadata.namespace}/{claim.metadata.name}",
                node=node,
                pod=pod.metadata.name,
            )

    async def _annotate(self, pod: objects_pb2.Pod, paths: dict[str, str]) -> None:
        updated = objects_pb2.Pod()
        updated.CopyFrom(pod)
        updated.metadata.annotations.update(paths)
        with contextlib.suppress(NotFound, Conflict):  # a newer pod is looked at again
            await self.objects.update(updated)
            log.info(
                "pod.volumes_resolved",
                pod=f"{pod.metadata.namespace}/{pod.metadata.name}",
                node=pod.spec.node_name,
                volumes=len(paths),
            )

    async def _conflict(self, pod: objects_pb2.Pod, message: str) -> None:
        if self.events is not None:
            await self.events.record(pod, EventType.WARNING, "FailedMount", message)

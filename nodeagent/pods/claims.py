"""A pod's persistentVolumeClaim volumes on the node: where each one is, as the control plane
recorded it when it bound the pod.

Rule: the scheduler binds a pod only once its claims are bound, and writes on it, per claim
volume, the annotation `pilothouse.io/volume.<volume name>` = the volume's directory on this
node (a local-path volume's hostPath). `resolve_claim` is the `persistent_volume_claim`
resolver of `PodVolumes` (`WorkerConfig.volume_resolvers`): the directory is made if missing
(DirectoryOrCreate) and bound into the containers like a hostPath volume, so what a pod writes
there survives the pod and is found again by the next pod of the same claim on this node.
A claim volume without the annotation is not ready: the pod waits in ContainerCreating with
a FailedMount event naming the claim, and the push that brings it (a pod made with its node
gets it from the storage controller, not the scheduler) makes the volume try again at once.
"""

from __future__ import annotations

from pathlib import Path

from nodeagent.pods.volumes import Resolver, VolumeHost
from pilothouse.v1 import objects_pb2

RESOLVED_PREFIX = "pilothouse.io/volume."


def resolve_claim(pod: objects_pb2.Pod, volume: objects_pb2.Volume) -> Path:
    claim = volume.persistent_volume_claim.claim_name
    path = pod.metadata.annotations.get(RESOLVED_PREFIX + volume.name, "")
    if not path:
        raise ValueError(
            f'persistentvolumeclaim "{claim}" is not bound to a volume on this node yet'
        )
    if not path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f'the node path "{path}" of claim "{claim}" is not absolute and clean')
    return VolumeHost.host_path(path, "DirectoryOrCreate")


RESOLVERS: dict[str, Resolver] = {"persistent_volume_claim": resolve_claim}

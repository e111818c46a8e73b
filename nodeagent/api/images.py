"""The agent's answer to ListImages: the node's images, and which of its pods use each.

A pod uses an image when one of its containers was started from it (its status' imageID) or
holds it prepared (its container id among the image's users: the previous attempt of a
restarting container too). Names are the image's tags; sizes and last uses are the image
service's (`nodeagent.images`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from nodeagent.images import StoredImage
from nodeagent.images.diskgc import disk_usage
from pilothouse.v1 import agent_pb2, objects_pb2


def _users(pods: Iterable[objects_pb2.Pod]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(image digest -> pods started from it, container id -> its pod), pods as ns/name."""
    by_digest: dict[str, set[str]] = {}
    by_container: dict[str, set[str]] = {}
    for pod in pods:
        key = f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"
        statuses = (*pod.status.init_container_statuses, *pod.status.container_statuses)
        for status in statuses:
            if status.image_id:
                by_digest.setdefault(status.image_id, set()).add(key)
            if status.container_id:
                by_container.setdefault(status.container_id, set()).add(key)
    return by_digest, by_container


def listing(
    images: Iterable[StoredImage],
    *,
    pods: Iterable[objects_pb2.Pod],
    filesystem: Path | None,
) -> agent_pb2.ListImagesResponse:
    by_digest, by_container = _users(pods)
    response = agent_pb2.ListImagesResponse()
    for image in images:
        users = set(by_digest.get(image.digest, ()))
        for container in image.users:
            users |= by_container.get(container, set())
        last_used = Timestamp()
        last_used.FromNanoseconds(int(image.last_used * 1e9))
        response.images.append(
            agent_pb2.NodeImage(
                names=image.names,
                digest=image.digest,
                size_bytes=image.size,
                last_used=last_used,
                pods=sorted(users),
            )
        )
    if filesystem is not None:
        try:
            usage = disk_usage(filesystem)
        except OSError:
            return response
        response.filesystem_capacity_bytes = usage.capacity
        response.filesystem_available_bytes = usage.available
    return response

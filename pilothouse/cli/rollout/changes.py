"""The rollout verbs that change a Deployment: undo, pause, resume, restart and set image.

Invariants:
- The pure functions (`undo_target`, `rolled_back`, `restarted`, `with_images`, `paused`)
  take and return messages and never talk to the server; the `async` ones read the Deployment
  with the `Client`, change it and `write` it back pinned to the resourceVersion read.
- Undo copies the revision's template with its digests: going back runs the same bytes.
- A verb the Deployment's state refuses raises `RolloutError` with kubectl's reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from pilothouse.cli.rollout.errors import RolloutError
from pilothouse.cli.rollout.revisions import (
    CHANGE_CAUSE,
    RESTARTED_AT,
    owned,
    read,
    revision_of,
    template_of,
    write,
)
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2


def undo_target(
    deployment: objects_pb2.Deployment,
    replicasets: Sequence[objects_pb2.ReplicaSet],
    *,
    to_revision: int = 0,
) -> objects_pb2.ReplicaSet:
    """The revision `rollout undo` goes to: `to_revision`, or the one before the current."""
    revisions = owned(deployment, replicasets)
    if to_revision:
        for rs in revisions:
            if revision_of(rs) == to_revision:
                return rs
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    if len(revisions) < 2:
        raise RolloutError(f'no rollout history found for deployment "{deployment.metadata.name}"')
    return revisions[-2]


def rolled_back(
    deployment: objects_pb2.Deployment, target: objects_pb2.ReplicaSet
) -> objects_pb2.Deployment:
    """The Deployment with `target`'s template (digests included) and its change-cause."""
    changed = _copy(deployment)
    changed.spec.template.CopyFrom(template_of(target))
    cause = target.metadata.annotations.get(CHANGE_CAUSE)
    if cause is None:
        changed.metadata.annotations.pop(CHANGE_CAUSE, None)
    else:
        changed.metadata.annotations[CHANGE_CAUSE] = cause
    return changed


def restarted(deployment: objects_pb2.Deployment, *, now: float) -> objects_pb2.Deployment:
    """`rollout restart`: a new template annotation makes a new revision; kubectl refuses a
    paused Deployment (the restart would wait, unseen, until it is resumed)."""
    if deployment.spec.paused:
        raise RolloutError("can't restart paused deployment (run rollout resume first)")
    changed = _copy(deployment)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    changed.spec.template.metadata.annotations[RESTARTED_AT] = stamp
    return changed


def with_images(
    deployment: objects_pb2.Deployment, images: Mapping[str, str]
) -> objects_pb2.Deployment:
    """`set image`: containers by name ("*" for all) get new images."""
    changed = _copy(deployment)
    containers = changed.spec.template.spec.containers
    for name, image in images.items():
        matched = [c for c in containers if name in ("*", c.name)]
        if not matched:
            raise RolloutError(f'unable to find container named "{name}"')
        for container in matched:
            container.image = image
    return changed


def paused(deployment: objects_pb2.Deployment, value: bool) -> objects_pb2.Deployment:
    """`rollout pause` (True) / `resume` (False); kubectl refuses a no-op."""
    name = deployment.metadata.name
    if deployment.spec.paused == value:
        state = "already paused" if value else "not paused"
        raise RolloutError(f'deployments.apps "{name}" is {state}')
    changed = _copy(deployment)
    changed.spec.paused = value
    return changed


def _copy(deployment: objects_pb2.Deployment) -> objects_pb2.Deployment:
    changed = objects_pb2.Deployment()
    changed.CopyFrom(deployment)
    return changed


async def undo(client: Client, name: str, *, namespace: str = "", to_revision: int = 0) -> str:
    deployment, replicasets = await read(client, name, namespace=namespace)
    if deployment.spec.paused:
        raise RolloutError(
            "you cannot rollback a paused deployment; resume it first with "
            f"'pilothouse rollout resume deployment/{name}' and try again"
        )
    target = undo_target(deployment, replicasets, to_revision=to_revision)
    if template_of(target) == deployment.spec.template:
        return (
            f"deployment.apps/{name} skipped rollback (current template already matches "
            f"revision {revision_of(target)})"
        )
    await write(client, rolled_back(deployment, target))
    return f"deployment.apps/{name} rolled back"


async def set_paused(client: Client, name: str, value: bool, *, namespace: str = "") -> str:
    deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
    await write(client, paused(deployment, value))  # type: ignore[arg-type]
    return f"deployment.apps/{name} {'paused' if value else 'resumed'}"


async def restart(
    client: Client, name: str, *, namespace: str = "", now: float | None = None
) -> str:
    deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
    await write(client, restarted(deployment, now=time.time() if now is None else now))  # type: ignore[arg-type]
    return f"deployment.apps/{name} restarted"


async def set_image(
    client: Client, name: str, images: Mapping[str, str], *, namespace: str = ""
) -> str:
    deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
    await write(client, with_images(deployment, images))  # type: ignore[arg-type]
    return f"deployment.apps/{name} image updated"


def parse_images(pairs: Sequence[str]) -> dict[str, str]:
    """`C=IMAGE` arguments of `set image`."""
    images = {}
    for pair in pairs:
        container, sep, image = pair.partition("=")
        if not sep or not container or not image:
            raise RolloutError(f"{pair!r} is not CONTAINER=IMAGE")
        images[container] = image
    return images

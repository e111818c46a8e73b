"""Rollout verbs done on the client side, as kubectl does them: status, history, undo, pause,
resume, restart, set image, and diff.

Vocabulary: a Deployment's revisions are its ReplicaSets (controller owner = the Deployment),
numbered by the `deployment.kubernetes.io/revision` annotation; their pod templates carry
image digests, with the tag as written in `pilothouse.io/image.<container>`.

Invariants:
- The pure functions (`status_of`, `history_rows`, `undo_target`, `restarted`, `with_images`
  …) take and return messages and never talk to the server; the `async` ones read with the
  `Client`, change one Deployment and write it back with Apply pinned to the resourceVersion
  they read, so a concurrent change makes them fail (ABORTED) instead of overwriting it.
- Undo copies the revision's template with its digests: going back runs the same bytes.
- Status messages are kubectl's, word for word.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import yaml
from google.protobuf.message import Message

from pilothouse.client import ChangeType, Client, ClientError, ErrorCode
from pilothouse.kinds import Kind, of_message
from pilothouse.shape import to_k8s
from pilothouse.v1 import objects_pb2

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ROLLBACK_REASON = "pilothouse.io/rollback-reason"
ORIGINAL_IMAGE = "pilothouse.io/image."
HASH_LABEL = "pod-template-hash"
TIMED_OUT = "ProgressDeadlineExceeded"


class RolloutError(Exception):
    """The verb cannot be done; the message says why (kubectl's wording where it has one)."""


class RolloutFailed(RolloutError):
    """The rollout failed (progress deadline exceeded)."""


class RolloutTimeout(RolloutError):
    """`rollout status --timeout` ran out before the rollout finished."""


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    message: str
    done: bool
    desired: int
    updated: int
    ready: int
    available: int


@dataclass(frozen=True, slots=True)
class HistoryRow:
    revision: int
    change_cause: str
    images: tuple[tuple[str, str, str], ...]  # (container, image as run, tag as written)
    replicaset: str


def revision_of(obj: objects_pb2.Deployment | objects_pb2.ReplicaSet) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def owned(
    deployment: objects_pb2.Deployment, replicasets: Sequence[objects_pb2.ReplicaSet]
) -> list[objects_pb2.ReplicaSet]:
    """The Deployment's revisions, oldest revision first."""
    uid = deployment.metadata.uid
    mine = [
        rs
        for rs in replicasets
        if any(r.controller and r.uid == uid for r in rs.metadata.owner_references)
    ]
    return sorted(mine, key=revision_of)


# ------------------------------------------------------------------------------ status


def status_of(deployment: objects_pb2.Deployment, *, revision: int = 0) -> RolloutStatus:
    """kubectl's DeploymentStatusViewer; raises `RolloutFailed` past the progress deadline."""
    name = deployment.metadata.name
    s = deployment.status
    desired = deployment.spec.replicas if deployment.spec.HasField("replicas") else 1

    def result(message: str, done: bool = False) -> RolloutStatus:
        return RolloutStatus(message, done, desired, s.updated_replicas, s.ready_replicas,
                             s.available_replicas)  # fmt: skip

    if revision and revision_of(deployment) != revision:
        raise RolloutError(
            f"desired revision ({revision}) is different from the running revision "
            f"({revision_of(deployment)})"
        )
    if deployment.metadata.generation > s.observed_generation:
        return result("Waiting for deployment spec update to be observed...")
    progressing = next((c for c in s.conditions if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == TIMED_OUT:
        raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if s.updated_replicas < desired:
        return result(
            f"{waiting}{s.updated_replicas} out of {desired} new replicas have been updated..."
        )
    if s.replicas > s.updated_replicas:
        return result(
            f"{waiting}{s.replicas - s.updated_replicas} old replicas are pending termination..."
        )
    if s.available_replicas < s.updated_replicas:
        return result(
            f"{waiting}{s.available_replicas} of {s.updated_replicas} updated replicas are "
            "available..."
        )
    return result(f'deployment "{name}" successfully rolled out', done=True)


async def watch_status(
    client: Client,
    name: str,
    *,
    namespace: str = "",
    revision: int = 0,
    give_up_after: float | None = None,
    progress: Callable[[RolloutStatus], None] | None = None,
) -> RolloutStatus:
    """Follow the rollout until done; `progress` sees every distinct status on the way (a new
    message or new replica counts). `give_up_after` raises `RolloutTimeout` with kubectl's
    words (the last status was already shown through `progress`)."""
    last: RolloutStatus | None = None

    async def follow() -> RolloutStatus:
        nonlocal last
        async for change in client.watch(
            Kind.DEPLOYMENT, namespace=namespace, field_selector=f"metadata.name={name}"
        ):
            if change.object is None or change.type is ChangeType.BOOKMARK:
                continue
            if change.type is ChangeType.DELETED:
                raise RolloutError(f'deployment "{name}" was deleted')
            current = status_of(change.object, revision=revision)  # type: ignore[arg-type]
            if progress is not None and current != last:
                progress(current)
            last = current
            if current.done:
                return current
        raise RolloutError("the watch ended before the rollout finished")

    await client.get(Kind.DEPLOYMENT, name, namespace=namespace)  # NotFound, readably
    try:
        async with asyncio.timeout(give_up_after):
            return await follow()
    except TimeoutError:
        raise RolloutTimeout("timed out waiting for the condition") from None


# ----------------------------------------------------------------------------- history


def history_rows(
    deployment: objects_pb2.Deployment, replicasets: Sequence[objects_pb2.ReplicaSet]
) -> list[HistoryRow]:
    rows = []
    for rs in owned(deployment, replicasets):
        annotations = rs.spec.template.metadata.annotations
        images = tuple(
            (c.name, c.image, annotations.get(f"{ORIGINAL_IMAGE}{c.name}", c.image))
            for c in rs.spec.template.spec.containers
        )
        rows.append(
            HistoryRow(
                revision=revision_of(rs),
                change_cause=rs.metadata.annotations.get(CHANGE_CAUSE, ""),
                images=images,
                replicaset=rs.metadata.name,
            )
        )
    return rows


def history_table(name: str, rows: Sequence[HistoryRow]) -> str:
    lines = [f"deployment.apps/{name}", ""]
    table = [("REVISION", "CHANGE-CAUSE", "IMAGES")]
    for row in rows:
        images = ", ".join(
            f"{c}={image}" + (f" ({tag})" if tag != image else "") for c, image, tag in row.images
        )
        table.append((str(row.revision), row.change_cause or "<none>", images))
    widths = [max(len(r[i]) for r in table) for i in range(2)]
    for revision, cause, images in table:
        lines.append(f"{revision:<{widths[0]}}  {cause:<{widths[1]}}  {images}".rstrip())
    return "\n".join(lines) + "\n"


def revision_detail(name: str, rs: objects_pb2.ReplicaSet) -> str:
    """`rollout history --revision N`: the revision's pod template."""
    body = yaml.safe_dump(to_k8s(rs)["spec"]["template"], sort_keys=False)
    header = f"deployment.apps/{name} with revision #{revision_of(rs)}\nPod Template:\n"
    return header + "".join(f"  {line}\n" for line in body.splitlines())


# -------------------------------------------------------------------------- changing


def template_of(rs: objects_pb2.ReplicaSet) -> objects_pb2.PodTemplateSpec:
    template = objects_pb2.PodTemplateSpec()
    template.CopyFrom(rs.spec.template)
    template.metadata.labels.pop(HASH_LABEL, None)
    return template


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


# ---------------------------------------------------------------------- with a client


async def read(
    client: Client, name: str, *, namespace: str = ""
) -> tuple[objects_pb2.Deployment, list[objects_pb2.ReplicaSet]]:
    deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
    listed = await client.list(Kind.REPLICASET, namespace=deployment.metadata.namespace)  # type: ignore[attr-defined]
    return deployment, owned(deployment, listed.items)  # type: ignore[arg-type]


async def write(client: Client, deployment: objects_pb2.Deployment) -> objects_pb2.Deployment:
    """Apply `deployment` as changed from what was read (pinned to its resourceVersion)."""
    applied = await client.apply(deployment)
    return applied.object  # type: ignore[return-value]


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


# ---------------------------------------------------------------------------------- diff


def _yaml(obj: Message | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(to_k8s(obj), sort_keys=False).splitlines(keepends=True)


async def diff(client: Client, objects: Sequence[Message]) -> str:
    """Unified diff of each object as stored against what Apply would make of it (server-side
    dry run); empty when applying would change nothing.

    Both sides are one version of the object: the dry run is pinned to the resourceVersion
    read, and a controller's write in between (status, say) makes it read both again, so such
    a write never shows as a difference. Annotations the controllers own (the revision
    number) are kept by Apply itself, so a manifest without them shows no difference."""
    chunks = []
    for obj in objects:
        kind = of_message(obj)
        live, merged = await _live_and_merged(client, obj)
        label = f"{kind.info.plural}/{obj.metadata.name}"
        chunks.extend(
            difflib.unified_diff(
                _yaml(live), _yaml(merged), fromfile=f"live/{label}", tofile=f"merged/{label}"
            )
        )
    return "".join(chunks)


async def _live_and_merged(
    client: Client, obj: Message, *, attempts: int = 10
) -> tuple[Message | None, Message]:
    meta = obj.metadata
    kind = of_message(obj)
    for attempt in range(attempts):
        live: Message | None
        try:
            live = await client.get(kind, meta.name, namespace=meta.namespace)
        except ClientError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise
            live = None  # Apply would create it
        wanted = type(obj)()
        wanted.CopyFrom(obj)
        if live is not None:
            wanted.metadata.resource_version = live.metadata.resource_version  # type: ignore[attr-defined]
        try:
            return live, (await client.apply(wanted, dry_run=True)).object
        except ClientError as error:
            # Changed (or created, or deleted) since it was read: read it again.
            retry = error.code in (
                ErrorCode.CONFLICT,
                ErrorCode.NOT_FOUND,
                ErrorCode.ALREADY_EXISTS,
            )
            if not retry or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")

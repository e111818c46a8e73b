"""Rollouts of DaemonSets and StatefulSets: status, history, undo and restart, as kubectl does
them over ControllerRevisions.

- status: kubectl's DaemonSetStatusViewer and StatefulSetStatusViewer, word for word (only
  for the RollingUpdate strategy: OnDelete has no rollout to follow);
- history: the set's ControllerRevisions, numbered, with their change cause and images;
  `--revision N` shows that revision's pod template;
- undo: the set's template becomes that of the previous revision (or `--to-revision N`); the
  controller then renumbers that revision as the newest and rolls the pods to it;
- restart: the template gets `kubectl.kubernetes.io/restartedAt`, so every pod is replaced.

Invariant: every change is a compare-and-swap apply of the set as read; a refusal says why in
kubectl's words and writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from pilothouse.cli.rollout.errors import RolloutError, RolloutTimeout
from pilothouse.cli.rollout.status import RolloutStatus
from pilothouse.cli.shape import to_k8s
from pilothouse.client import ChangeType, Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
SETS = (Kind.DAEMONSET, Kind.STATEFULSET)


def _label(kind: Kind) -> str:
    return "daemon set" if kind is Kind.DAEMONSET else "statefulset"


def status_of(obj: Message) -> RolloutStatus:
    """The set's rollout status, in kubectl's words (`RolloutError` for OnDelete)."""
    if isinstance(obj, o.DaemonSet):
        return _daemon_set_status(obj)
    assert isinstance(obj, o.StatefulSet)
    return _stateful_set_status(obj)


def _daemon_set_status(ds: o.DaemonSet) -> RolloutStatus:
    s = ds.status
    desired = s.desired_number_scheduled

    def result(message: str, done: bool = False) -> RolloutStatus:
        return RolloutStatus(message, done, desired, s.updated_number_scheduled, s.number_ready,
                             s.number_available)  # fmt: skip

    if ds.spec.update_strategy.type == "OnDelete":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    if ds.metadata.generation > s.observed_generation:
        return result("Waiting for daemon set spec update to be observed...")
    name = ds.metadata.name
    if s.updated_number_scheduled < desired:
        return result(
            f'Waiting for daemon set "{name}" rollout to finish: {s.updated_number_scheduled} '
            f"out of {desired} new pods have been updated..."
        )
    if s.number_available < desired:
        return result(
            f'Waiting for daemon set "{name}" rollout to finish: {s.number_available} of '
            f"{desired} updated pods are available..."
        )
    return result(f'daemon set "{name}" successfully rolled out', done=True)


def _stateful_set_status(sts: o.StatefulSet) -> RolloutStatus:
    s = sts.status
    desired = sts.spec.replicas if sts.spec.HasField("replicas") else 1

    def result(message: str, done: bool = False) -> RolloutStatus:
        return RolloutStatus(message, done, desired, s.updated_replicas, s.ready_replicas,
                             s.available_replicas)  # fmt: skip

    strategy = sts.spec.update_strategy
    if strategy.type == "OnDelete":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    if sts.metadata.generation > s.observed_generation:
        return result("Waiting for statefulset spec update to be observed...")
    if s.ready_replicas < desired:
        return result(f"Waiting for {desired - s.ready_replicas} pods to be ready...")
    partition = strategy.rolling_update.partition
    if strategy.rolling_update.HasField("partition") and partition > 0:
        if s.updated_replicas < desired - partition:
            return result(
                f"Waiting for partitioned roll out to finish: {s.updated_replicas} out of "
                f"{desired - partition} new pods have been updated..."
            )
        return result(
            f"partitioned roll out complete: {s.updated_replicas} new pods have been updated...",
            done=True,
        )
    if s.update_revision != s.current_revision:
        return result(
            f"waiting for statefulset rolling update to complete {s.updated_replicas} pods at "
            f"revision {s.update_revision}..."
        )
    return result(
        f"statefulset rolling update complete {s.current_replicas} pods at revision "
        f"{s.current_revision}...",
        done=True,
    )


async def watch_status(
    client: Client,
    kind: Kind,
    name: str,
    *,
    namespace: str,
    give_up_after: float | None,
    progress: Callable[[RolloutStatus], None],
) -> RolloutStatus:
    """Follow the set until its rollout is done (a watch from the state read)."""

    async def follow() -> RolloutStatus:
        current = await client.get(kind, name, namespace=namespace)
        status = status_of(current)
        progress(status)
        if status.done:
            return status
        field = f"metadata.name={name}"
        async for change in client.watch(kind, namespace=namespace, field_selector=field):
            if change.object is None or change.type is ChangeType.DELETED:
                continue
            status = status_of(change.object)
            progress(status)
            if status.done:
                return status
        raise RolloutError(f"the watch of {kind.info.plural}/{name} ended")

    try:
        async with asyncio.timeout(give_up_after):
            return await follow()
    except TimeoutError:
        raise RolloutTimeout("timed out waiting for the condition") from None


async def revisions(
    client: Client, kind: Kind, name: str, *, namespace: str
) -> tuple[Message, list[o.ControllerRevision]]:
    owner = await client.get(kind, name, namespace=namespace)
    listed = await client.list(Kind.CONTROLLERREVISION, namespace=namespace)
    uid = owner.metadata.uid  # type: ignore[attr-defined]
    mine = [
        r
        for r in listed.items
        if isinstance(r, o.ControllerRevision)
        and any(ref.uid == uid for ref in r.metadata.owner_references)
    ]
    return owner, sorted(mine, key=lambda r: r.revision)


def template_of(revision: o.ControllerRevision) -> o.PodTemplateSpec:
    template = o.PodTemplateSpec()
    data = json_format.MessageToDict(revision.data)
    json_format.ParseDict(data.get("spec", {}).get("template", {}), template)
    return template


def history_table(kind: Kind, name: str, history: Sequence[o.ControllerRevision]) -> str:
    lines = [f"{kind.info.kind.lower()}.apps/{name}", ""]
    table = [("REVISION", "CHANGE-CAUSE", "IMAGES")]
    for revision in history:
        images = ", ".join(f"{c.name}={c.image}" for c in template_of(revision).spec.containers)
        cause = revision.metadata.annotations.get(CHANGE_CAUSE, "") or "<none>"
        table.append((str(revision.revision), cause, images))
    widths = [max(len(r[i]) for r in table) for i in range(2)]
    for number, cause, images in table:
        lines.append(f"{number:<{widths[0]}}  {cause:<{widths[1]}}  {images}".rstrip())
    return "\n".join(lines) + "\n"


def revision_detail(kind: Kind, name: str, revision: o.ControllerRevision) -> str:
    template = o.PodTemplateSpec()
    template.CopyFrom(template_of(revision))
    pod = o.Pod(metadata=template.metadata, spec=template.spec)
    shown = to_k8s(pod)
    shown.pop("apiVersion", None)
    shown.pop("kind", None)
    shown.pop("status", None)
    body = yaml.safe_dump(shown, sort_keys=False)
    header = f"{kind.info.kind.lower()}.apps/{name} with revision #{revision.revision}\n"
    return header + "Pod Template:\n" + "".join(f"  {line}\n" for line in body.splitlines())


async def undo(
    client: Client, kind: Kind, name: str, *, namespace: str, to_revision: int = 0
) -> str:
    owner, history = await revisions(client, kind, name, namespace=namespace)
    if to_revision:
        target = next((r for r in history if r.revision == to_revision), None)
        if target is None:
            raise RolloutError(f"unable to find specified revision {to_revision} in history")
    else:
        if len(history) < 2:
            raise RolloutError("no rollout history found")
        target = history[-2]
    template = template_of(target)
    current = owner.spec.template  # type: ignore[attr-defined]
    reference = f"{kind.info.kind.lower()}.apps/{name}"
    if template == current:
        return f"{reference} skipped rollback (current template already matches revision " \
            f"{target.revision})"  # fmt: skip
    owner.spec.template.CopyFrom(template)  # type: ignore[attr-defined]
    await client.apply(owner)
    return f"{reference} rolled back"


async def restart(client: Client, kind: Kind, name: str, *, namespace: str, now: float) -> str:
    owner = await client.get(kind, name, namespace=namespace)
    at = datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    owner.spec.template.metadata.annotations[RESTARTED_AT] = at  # type: ignore[attr-defined]
    await client.apply(owner)
    return f"{kind.info.kind.lower()}.apps/{name} restarted"

"""`rollout status`: kubectl's DeploymentStatusViewer, once or following a watch.

Invariant: the messages are kubectl's, word for word; a rollout past its progress deadline is
`RolloutFailed`, never a status that looks like waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from pilothouse.cli import watching
from pilothouse.cli.rollout.errors import RolloutError, RolloutFailed, RolloutTimeout
from pilothouse.cli.rollout.revisions import revision_of
from pilothouse.client import ChangeType, Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

TIMED_OUT = "ProgressDeadlineExceeded"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    message: str
    done: bool
    desired: int
    updated: int
    ready: int
    available: int


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
    on_retry: Callable[[str], None] | None = None,
) -> RolloutStatus:
    """Follow the rollout until done; `progress` sees every distinct status on the way (a new
    message or new replica counts). `give_up_after` raises `RolloutTimeout` with kubectl's
    words (the last status was already shown through `progress`). A short outage of the
    control plane or etcd is waited out (`watching`), each retry told to `on_retry`."""
    last: RolloutStatus | None = None

    async def follow() -> RolloutStatus:
        nonlocal last
        async for change in watching.follow(
            client,
            Kind.DEPLOYMENT,
            namespace=namespace,
            field_selector=f"metadata.name={name}",
            on_retry=on_retry,
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

    try:
        async with asyncio.timeout(give_up_after):
            # NotFound, readably, before the watch
            await watching.retrying(
                lambda: client.get(Kind.DEPLOYMENT, name, namespace=namespace), on_retry=on_retry
            )
            return await follow()
    except TimeoutError:
        raise RolloutTimeout("timed out waiting for the condition") from None

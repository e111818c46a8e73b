"""Ending a pod: stop its containers within the grace period, then remove what it holds.

Role: the part of a pod's worker that runs on `stop()` and `expedite()`. `stop_pod` sends
the Killing events, stops the main containers first and the sidecars one by one (each with
its preStop hook, then SIGTERM/SIGKILL) within one grace period, removes every container of
the pod, detaches its network sandbox, then its volumes, pinned namespaces and directory.
`kill_now` ends the pod's containers at once (SIGKILL; a fenced node).

Invariants:
- Idempotent: a second stop finds nothing left to do.
- A sandbox that cannot be detached is logged, not fatal: the next agent start removes it.
- Volumes and pinned namespaces are unmounted before the pod's directory is deleted.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from nodeagent.network.cni import CniError
from nodeagent.network.netns import NetnsError
from nodeagent.network.sandbox import PodNetworks
from nodeagent.pods import attempts, sequence, specs
from nodeagent.pods.events import Reason
from nodeagent.pods.preparation import PodPreparation
from nodeagent.pods.stop import stop_container
from nodeagent.runtime import ContainerState, Status
from pilothouse.v1 import objects_pb2


async def stop_pod(
    scope: attempts.PodScope,
    *,
    grace: float,
    networks: PodNetworks,
    state_dir: Path,
    container_of: Callable[[str], objects_pb2.Container],
) -> None:
    """Stop and remove every container of the pod (by uid), then its files."""
    pod = scope.pod
    mine = await scope.containers.all()
    running = [s for s in mine if s.status is Status.RUNNING]
    scope.log.info("pod.stopping", containers=len(mine), grace_seconds=grace)
    for state in running:
        name = state.labels.get(specs.LABEL_CONTAINER, "")
        scope.event(name, Reason.KILLING, f"Stopping container {name}")
    # Main containers first, then the sidecars one by one, within one grace period.
    deadline = asyncio.get_running_loop().time() + grace
    for group in sequence.stop_groups(pod, running):
        left = max(deadline - asyncio.get_running_loop().time(), 0)
        await asyncio.gather(
            *(_stop_one(scope, s, grace=left, container_of=container_of) for s in group)
        )
    for s in mine:
        await scope.containers.remove(s.id)
    try:
        await networks.detach(pod)
    except (CniError, NetnsError, OSError) as exc:
        # The next agent start removes it (PodManager.start: detach_others).
        scope.log.warning("pod.sandbox_remove_failed", error=str(exc))
    pod_dir = specs.pod_dir(state_dir, pod)
    # Volumes (tmpfs, files of Secrets) and pinned namespaces go before the directory.
    await asyncio.to_thread(PodPreparation.remove, pod_dir)
    shutil.rmtree(pod_dir, ignore_errors=True)
    scope.log.info("pod.removed")


async def _stop_one(
    scope: attempts.PodScope,
    state: ContainerState,
    *,
    grace: float,
    container_of: Callable[[str], objects_pb2.Container],
) -> None:
    """One running container of the pod: its preStop hook, then SIGTERM/SIGKILL."""
    name = state.labels.get(specs.LABEL_CONTAINER, "")
    try:
        container = container_of(name)
    except StopIteration:  # an orphan's container (no spec): no hook to run
        await stop_container(scope.runtime, state.id, grace=grace, log=scope.log)
        return
    await attempts.stop_with_hook(scope, container, state, grace=grace)


async def kill_now(scope: attempts.PodScope) -> None:
    """SIGKILL every container of the pod that has not stopped."""
    for state in await scope.containers.all():
        if state.status is not Status.STOPPED:
            await stop_container(scope.runtime, state.id, grace=0, log=scope.log)

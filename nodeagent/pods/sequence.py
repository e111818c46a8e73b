"""The order of a pod's containers: init containers, sidecars, main containers (pure).

Rules (Kubernetes' pod lifecycle, sidecars as of 1.29):
- init containers run one at a time, in spec order, each to completion (exit 0) before the
  next starts; a failed one runs again per the pod's policy, under OnFailure when the pod's
  is Always (`init_policy`), and under Never it fails the pod: nothing after it starts;
- a sidecar (an init container with `restartPolicy: Always`) is started in its turn and the
  next init container waits only until it is started (running, its postStart hook done and
  its startup probe passed); it then keeps running beside the main containers, restarted
  whatever the pod's policy;
- the main containers start once every init container is done;
- stopping: main containers first, then the sidecars one at a time in reverse order
  (`stop_groups`); under a policy other than Always, sidecars are stopped once every main
  container has ended for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from nodeagent.pods import specs
from nodeagent.pods.restart import RestartPolicy
from nodeagent.pods.status import ContainerRecord, Terminated
from nodeagent.runtime import ContainerState
from pilothouse.v1 import objects_pb2

SIDECAR = "Always"
Supervise = Callable[
    [objects_pb2.Container, RestartPolicy, asyncio.Event | None], Coroutine[Any, Any, None]
]


def is_sidecar(container: objects_pb2.Container) -> bool:
    return container.restart_policy == SIDECAR


def init_policy(pod_policy: RestartPolicy) -> RestartPolicy:
    """The restart policy of the pod's (non-sidecar) init containers."""
    return RestartPolicy.ON_FAILURE if pod_policy is RestartPolicy.ALWAYS else pod_policy


def succeeded(record: ContainerRecord) -> bool:
    return isinstance(record.state, Terminated) and record.state.exit_code == 0


def started_main(pod: objects_pb2.Pod, adopted: Sequence[ContainerState]) -> bool:
    """Whether a main container already ran: the pod was initialized before (re-adoption)."""
    mains = {c.name for c in pod.spec.containers}
    return any(s.labels.get(specs.LABEL_CONTAINER) in mains for s in adopted)


def stop_groups(
    pod: objects_pb2.Pod, states: Sequence[ContainerState]
) -> list[list[ContainerState]]:
    """`states` in the order they are stopped: main (and plain init) containers together,
    then each sidecar alone, last started first."""
    sidecars = [c.name for c in pod.spec.init_containers if is_sidecar(c)]
    first = [s for s in states if s.labels.get(specs.LABEL_CONTAINER) not in sidecars]
    groups = [first] if first else []
    for name in reversed(sidecars):
        group = [s for s in states if s.labels.get(specs.LABEL_CONTAINER) == name]
        if group:
            groups.append(group)
    return groups


async def run(
    pod: objects_pb2.Pod,
    *,
    records: dict[str, ContainerRecord],
    policy: RestartPolicy,
    supervise: Supervise,
    wait_for: Callable[[Callable[[], bool]], Awaitable[None]],
    end_sidecar: Callable[[objects_pb2.Container], Awaitable[None]],
    on_initialized: Callable[[], None],
    on_init_failed: Callable[[], None],
) -> None:
    """Run the pod's containers in the order above; parks once all are supervised.

    `supervise(container, policy, done)` runs one container per `policy` until cancelled,
    setting `done` once it will not run again; `wait_for(predicate)` returns once it holds."""
    sidecars: list[tuple[objects_pb2.Container, asyncio.Task[None]]] = []
    key = specs.pod_key(pod)
    async with asyncio.TaskGroup() as tg:
        for c in pod.spec.init_containers:
            rec = records[c.name]
            name = f"init container {key}/{c.name}"
            if is_sidecar(c):
                task = tg.create_task(supervise(c, RestartPolicy.ALWAYS, None), name=name)
                sidecars.append((c, task))
                await wait_for(lambda rec=rec: rec.started)  # type: ignore[misc]
                continue
            done = asyncio.Event()
            tg.create_task(supervise(c, init_policy(policy), done), name=name)
            await done.wait()
            if not succeeded(rec):
                on_init_failed()  # restartPolicy Never: the pod has failed
                await _end(sidecars, end_sidecar)
                return
        on_initialized()
        mains = []
        for c in pod.spec.containers:
            done = asyncio.Event()
            mains.append(done)
            tg.create_task(supervise(c, policy, done), name=f"container {key}/{c.name}")
        if sidecars and policy is not RestartPolicy.ALWAYS:
            await asyncio.gather(*(d.wait() for d in mains))
            await _end(sidecars, end_sidecar)


async def _end(
    sidecars: list[tuple[objects_pb2.Container, asyncio.Task[None]]],
    end_sidecar: Callable[[objects_pb2.Container], Awaitable[None]],
) -> None:
    """Stop the sidecars for good, last started first."""
    for container, task in reversed(sidecars):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await end_sidecar(container)

"""A pod's supervision: its network sandbox, then each container's restart loop.

Role: the parts of a pod's worker that run for the pod's life: `attach_sandbox` attaches
the pod's network (retried with backoff, each failure an event and a Waiting reason); for
each container, `supervise` keeps `converge` going, starting over from the runtime's state after an
unexpected error (level-triggered); `converge` adopts the container's attempts found in the
runtime, then makes, runs and ends attempts until the restart policy says stop.

Invariants:
- The runtime is the source of truth: without a list of adopted containers, `converge`
  reads the runtime for this pod's (uid) containers of that name.
- Attempt n is kept until attempt n+1 starts; older attempts are removed.
- An attempt created but never started is removed and created afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nodeagent.network.cni import CniError
from nodeagent.network.netns import NetnsError
from nodeagent.network.sandbox import PodNetworks, Sandbox
from nodeagent.pods import attempts, specs
from nodeagent.pods.containers import attempt_of
from nodeagent.pods.events import EventType, Reason
from nodeagent.pods.restart import Action, Backoff, BackoffConfig, RestartPolicy, RestartTracker
from nodeagent.pods.status import ContainerRecord, Waiting, WaitingReason
from nodeagent.runtime import ContainerState, Status
from pilothouse.v1 import objects_pb2

Observe = Callable[[ContainerRecord, list[ContainerState]], None]


async def attach_sandbox(
    scope: attempts.PodScope,
    *,
    networks: PodNetworks,
    backoff: BackoffConfig,
    records: dict[str, ContainerRecord],
) -> Sandbox:
    """Attach the pod's network, retrying with backoff until it is attached."""
    retry = Backoff(backoff)
    while True:
        try:
            sandbox = await networks.attach(scope.pod)
            scope.sandbox = sandbox
            scope.changed()
            return sandbox
        except (CniError, NetnsError, OSError) as exc:
            scope.log.warning("pod.sandbox_failed", error=str(exc))
            scope.events.record(
                type=EventType.WARNING,
                reason=Reason.FAILED_CREATE_POD_SANDBOX,
                message=f"Failed to create pod sandbox: {exc}",
            )
            for rec in records.values():
                rec.state = Waiting(
                    WaitingReason.CONTAINER_CREATING, f"FailedCreatePodSandBox: {exc}"
                )
            scope.changed()
            await asyncio.sleep(retry.next())


async def supervise(
    scope: attempts.PodScope,
    container: objects_pb2.Container,
    rec: ContainerRecord,
    *,
    policy: RestartPolicy,
    backoff: BackoffConfig,
    take_adopted: Callable[[], list[ContainerState] | None],
    observe: Observe,
    done: asyncio.Event | None = None,
) -> None:
    """Run `converge` for good; `done` is set once the container is not to run again."""
    retry = Backoff(backoff)
    first = True
    while True:
        try:
            await converge(
                scope,
                container,
                rec,
                adopted=take_adopted(),
                policy=policy,
                backoff=backoff,
                observe=observe,
            )
            if done is not None:
                done.set()
            await asyncio.Event().wait()  # the container is done for good; park
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Unexpected: log and start over from the runtime's state (level-triggered).
            scope.log.exception("pod.supervise_failed", container=container.name)
            scope.containers.forget()
            if first:
                rec.state = Waiting(WaitingReason.CREATE_CONTAINER_ERROR, str(exc))
                scope.changed()
            first = False
            await asyncio.sleep(retry.next())


async def converge(
    scope: attempts.PodScope,
    container: objects_pb2.Container,
    rec: ContainerRecord,
    *,
    adopted: list[ContainerState] | None,
    policy: RestartPolicy,
    backoff: BackoffConfig,
    observe: Observe,
) -> None:
    """Run the container per its restart policy; return when it is not to run again."""
    name = container.name
    pod = scope.pod
    if adopted is None:
        uid = pod.metadata.uid
        adopted = [
            s
            for s in await scope.runtime.list()
            if s.labels.get(specs.LABEL_UID) == uid and s.labels.get(specs.LABEL_CONTAINER) == name
        ]
    current: ContainerState | None = None
    attempt = 0
    if adopted:
        observe(rec, adopted)
        attempt = rec.restart_count
        latest = max(adopted, key=attempt_of)
        for s in adopted:
            if attempt_of(s) < attempt - 1:
                await scope.containers.remove(s.id)
        if latest.status is Status.CREATED or latest.status is Status.UNKNOWN:
            await scope.containers.remove(latest.id)  # never started: create it afresh
        else:
            current = latest
            scope.log.info("pod.container_adopted", container=name, id=latest.id, attempt=attempt)
    tracker = RestartTracker(policy, backoff)
    create_backoff = Backoff(backoff)
    while True:
        if current is None:
            current = await attempts.make(
                scope, container, rec, attempt=attempt, backoff=create_backoff
            )
            if attempt >= 2:
                await scope.containers.remove(specs.container_id(pod, name, attempt - 2))
        verdict = ""
        if current.status is not Status.STOPPED:
            current, verdict = await attempts.run(scope, container, rec, current)
        term, exit_ = attempts.ended(scope, rec, current, verdict=verdict, attempt=attempt)
        decision = tracker.on_exit(exit_)
        if decision.action is Action.STOP:
            scope.changed()
            return
        attempts.back_off(scope, rec, term, delay=decision.delay)
        await asyncio.sleep(decision.delay)
        attempt += 1
        current = None

"""A pod's containers as the runtime holds them: adoption, lookup and removal.

Role: read what the runtime says about a pod's containers into its records (a restarted
agent re-adopts them), find every container of the pod, and remove one with its rootfs.

Invariants:
- The runtime is the source of truth: a record filled from adopted containers shows the
  latest attempt's state and the previous attempt's exit as lastState.
- While the set of known containers is kept (`known` not None) it holds every container of
  the pod the runtime may have: each id is added before its container is created and dropped
  only once it is deleted. `forget()` gives that up, and lookups list the runtime again.
- Removing a container also releases its image mounts, and a container already gone is fine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from nodeagent.images import ImageService
from nodeagent.pods import specs
from nodeagent.pods.status import ContainerRecord, Running, Terminated, TerminatedReason
from nodeagent.probes.prober import initial
from nodeagent.runtime import ContainerNotFound, ContainerRuntime, ContainerState, Status
from pilothouse.v1 import objects_pb2


def attempt_of(state: ContainerState) -> int:
    """The attempt (restart count) a container in the runtime was made for."""
    try:
        return int(state.labels.get(specs.LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def terminated(state: ContainerState) -> Terminated:
    """An ended container's state as a status shows it."""
    code = state.exit_code if state.exit_code is not None else 0
    return Terminated(
        exit_code=code,
        reason=TerminatedReason.of(code, oom_killed=state.oom_killed),
        started_at=state.started_at,
        finished_at=state.finished_at,
        container_id=state.id,
        signal=code - 128 if code > 128 and not state.oom_killed else 0,
    )


def observe_adopted(
    rec: ContainerRecord,
    states: list[ContainerState],
    *,
    container: Callable[[], objects_pb2.Container],
    remembered: Callable[[str], tuple[bool, bool] | None],
) -> None:
    """Fill a record from the containers found in the runtime (re-adoption).

    `remembered(container_id)`: the (started, ready) last reported for that attempt, if any;
    else a running attempt starts from `initial(container())`.
    """
    states = sorted(states, key=attempt_of)
    latest = states[-1]
    rec.restart_count = attempt_of(latest)
    rec.container_id = latest.id
    rec.image_id = latest.labels.get(specs.LABEL_IMAGE_ID, "")
    previous = [s for s in states if attempt_of(s) == rec.restart_count - 1]
    if previous and previous[0].status is Status.STOPPED:
        rec.last_terminated = terminated(previous[0])
    if latest.status is Status.RUNNING:
        rec.state = Running(latest.started_at or datetime.now(UTC))
        rec.started, rec.ready = remembered(latest.id) or initial(container())
    elif latest.status is Status.STOPPED:
        rec.state = terminated(latest)


class PodContainers:
    """The containers of one pod (by uid) in the runtime."""

    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        images: ImageService,
        uid: str,
        known: set[str] | None,
    ) -> None:
        self._runtime = runtime
        self._images = images
        self._uid = uid
        self._known = known

    def track(self, cid: str) -> None:
        """`cid` is about to be created (kept only while every container is known)."""
        if self._known is not None:
            self._known.add(cid)

    def forget(self) -> None:
        """Stop trusting the known set: from now on, lookups list the runtime."""
        self._known = None

    async def all(self) -> list[ContainerState]:
        """Every container of this pod (by uid) the runtime holds."""
        if self._known is None:
            return [
                s for s in await self._runtime.list() if s.labels.get(specs.LABEL_UID) == self._uid
            ]
        found = []
        for cid in sorted(self._known):
            with contextlib.suppress(ContainerNotFound):
                found.append(await self._runtime.state(cid))
        return found

    async def remove(self, cid: str) -> None:
        """Delete the container (if there) and release its image mounts."""
        with contextlib.suppress(ContainerNotFound):
            await self._runtime.delete(cid)
        if self._known is not None:
            self._known.discard(cid)
        await self._images.release(cid)

"""An in-memory ContainerRuntime with knobs, for unit tests and hollow nodes.

Each container behaves like a process that runs for `run_for` seconds (None: until killed)
and then exits with `exit_code`; `start_error` makes `start` fail the way runc does for a
missing executable; `oom` makes it end as if the memory limit was hit (exit 137,
`oom_killed`); `ignore_sigterm` makes signal 15 do nothing (so graceful stops time out);
`output` lines are written to the spec's `log_path` in the CRI log format when it starts.

Knobs come from the constructor (defaults for every container), from `set_knobs(id, ...)`
before the container is created, or from the container's labels (`fake.pilothouse/run-for`,
`.../exit-code`, `.../start-error`, `.../oom`, `.../ignore-sigterm`), in rising precedence.

Invariants (the same as the real runtime's, checked by tests/contract/test_runtime.py):
- time passes honestly: a container with `run_for=2` is RUNNING for 2 s of the event loop's
  clock and STOPPED after, whether or not anyone waits for it;
- state lives in a `FakeNode`, not in the runtime object: `restarted()` returns a new runtime
  over the same node, as an agent restart would see it (re-adoption);
- `kill` ends a running container with 128+signal; `kill` of a stopped one is a no-op;
  `delete` is idempotent and ends a running container first.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nodeagent.runtime import (
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    RuntimeError_,
    Status,
)

LABEL_PREFIX = "fake.pilothouse/"


@dataclass(frozen=True, slots=True)
class Knobs:
    run_for: float | None = None  # seconds; None: until killed
    exit_code: int = 0
    start_error: str | None = None
    oom: bool = False
    ignore_sigterm: bool = False
    output: tuple[str, ...] = ()

    def with_labels(self, labels: dict[str, str]) -> Knobs:
        """These knobs, overridden by any `fake.pilothouse/...` labels."""
        changes: dict[str, object] = {}
        if (v := labels.get(LABEL_PREFIX + "run-for")) is not None:
            changes["run_for"] = None if v in ("", "forever", "none") else float(v)
        if (v := labels.get(LABEL_PREFIX + "exit-code")) is not None:
            changes["exit_code"] = int(v)
        if (v := labels.get(LABEL_PREFIX + "start-error")) is not None:
            changes["start_error"] = v or None
        if (v := labels.get(LABEL_PREFIX + "oom")) is not None:
            changes["oom"] = v.lower() in ("1", "true", "yes")
        if (v := labels.get(LABEL_PREFIX + "ignore-sigterm")) is not None:
            changes["ignore_sigterm"] = v.lower() in ("1", "true", "yes")
        if (v := labels.get(LABEL_PREFIX + "output")) is not None:
            changes["output"] = tuple(v.splitlines())
        return dataclasses.replace(self, **changes)


def knob_labels(
    *,
    run_for: float | None = None,
    exit_code: int = 0,
    start_error: str | None = None,
    oom: bool = False,
    ignore_sigterm: bool = False,
    output: tuple[str, ...] = (),
) -> dict[str, str]:
    """Labels that give one container these knobs (for specs built far from the runtime)."""
    return {
        LABEL_PREFIX + "output": "\n".join(output),
        LABEL_PREFIX + "run-for": "forever" if run_for is None else str(run_for),
        LABEL_PREFIX + "exit-code": str(exit_code),
        LABEL_PREFIX + "start-error": start_error or "",
        LABEL_PREFIX + "oom": str(oom).lower(),
        LABEL_PREFIX + "ignore-sigterm": str(ignore_sigterm).lower(),
    }


@dataclass(slots=True)
class _Container:
    spec: ContainerSpec
    knobs: Knobs
    pid: int
    status: Status = Status.CREATED
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: float | None = None  # event-loop time when the "process" ends by itself
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


@dataclass(slots=True)
class FakeNode:
    """What survives an agent restart: the containers and their "processes"."""

    containers: dict[str, _Container] = field(default_factory=dict)
    next_pid: int = 1000


class FakeRuntime:
    def __init__(
        self,
        *,
        run_for: float | None = None,
        exit_code: int = 0,
        start_error: str | None = None,
        oom: bool = False,
        ignore_sigterm: bool = False,
        output: tuple[str, ...] = (),
        node: FakeNode | None = None,
    ) -> None:
        self.defaults = Knobs(
            run_for=run_for,
            exit_code=exit_code,
            start_error=start_error,
            oom=oom,
            ignore_sigterm=ignore_sigterm,
            output=output,
        )
        self.node = node if node is not None else FakeNode()
        self._pending_knobs: dict[str, Knobs] = {}

    def restarted(self) -> FakeRuntime:
        """A new runtime object over the same containers, as a restarted agent sees them."""
        rt = FakeRuntime(node=self.node)
        rt.defaults = self.defaults
        return rt

    def set_knobs(self, container_id: str, **knobs: object) -> None:
        """Knobs for a container not created yet (overridden by its labels)."""
        self._pending_knobs[container_id] = dataclasses.replace(self.defaults, **knobs)  # type: ignore[arg-type]

    # -- the ContainerRuntime protocol ------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerState:
        if spec.id in self.node.containers:
            raise RuntimeError_(f'container "{spec.id}" already exists')
        base = self._pending_knobs.pop(spec.id, self.defaults)
        self.node.next_pid += 1
        c = _Container(spec=spec, knobs=base.with_labels(spec.labels), pid=self.node.next_pid)
        self.node.containers[spec.id] = c
        return self._snapshot(c)

    async def start(self, container_id: str) -> ContainerState:
        c = self._get(container_id)
        if c.status is not Status.CREATED:
            raise RuntimeError_(
                f'cannot start container "{container_id}": it is {c.status.value}, not created'
            )
        if c.knobs.start_error is not None:
            self._end(c, exit_code=128)
            raise RuntimeError_(c.knobs.start_error)
        loop = asyncio.get_running_loop()
        c.status = Status.RUNNING
        c.started_at = datetime.now(UTC)
        if c.knobs.output and c.spec.log_path:
            _write_log(c.spec.log_path, c.knobs.output, c.started_at)
        if c.knobs.oom:
            c.deadline = loop.time() + (c.knobs.run_for or 0.0)
        elif c.knobs.run_for is not None:
            c.deadline = loop.time() + c.knobs.run_for
        self._advance(c)
        return self._snapshot(c)

    async def kill(self, container_id: str, *, signal: int = 15) -> None:
        c = self._get(container_id)
        self._advance(c)
        if c.status is Status.STOPPED:
            return
        if signal == 15 and c.knobs.ignore_sigterm and c.status is Status.RUNNING:
            return
        if signal == 0:
            return
        self._end(c, exit_code=128 + signal)

    async def wait(self, container_id: str) -> ContainerState:
        c = self._get(container_id)
        loop = asyncio.get_running_loop()
        while True:
            self._advance(c)
            if c.status is Status.STOPPED:
                return self._snapshot(c)
            fut: asyncio.Future[None] = loop.create_future()
            c.waiters.append(fut)
            timeout = None if c.deadline is None else max(0.0, c.deadline - loop.time())
            try:
                await asyncio.wait({fut}, timeout=timeout)
            finally:
                if fut in c.waiters:
                    c.waiters.remove(fut)
            if container_id not in self.node.containers and c.status is not Status.STOPPED:
                raise ContainerNotFound(container_id)

    async def delete(self, container_id: str) -> None:
        c = self.node.containers.pop(container_id, None)
        if c is None:
            return
        self._advance(c)
        if c.status is not Status.STOPPED:
            self._end(c, exit_code=137)

    async def state(self, container_id: str) -> ContainerState:
        c = self._get(container_id)
        self._advance(c)
        return self._snapshot(c)

    async def list(self) -> list[ContainerState]:
        out = []
        for c in list(self.node.containers.values()):
            self._advance(c)
            out.append(self._snapshot(c))
        return out

    async def version(self) -> str:
        return "fake 0.1"

    async def rotate_logs(self, *, max_bytes: int) -> list[str]:
        """As RuncRuntime's; the fake's logs never grow, so nothing is rotated."""
        return []

    # -- helpers ----------------------------------------------------------------------------

    def _get(self, container_id: str) -> _Container:
        c = self.node.containers.get(container_id)
        if c is None:
            raise ContainerNotFound(f'container "{container_id}" not found')
        return c

    def _advance(self, c: _Container) -> None:
        """End the "process" if its time has come (time passes even when nobody looks)."""
        if c.status is not Status.RUNNING or c.deadline is None:
            return
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            return
        if now < c.deadline:
            return
        assert c.started_at is not None
        finished = c.started_at + timedelta(seconds=c.knobs.run_for or 0.0)
        if c.knobs.oom:
            self._end(c, exit_code=137, oom=True, finished_at=finished)
        else:
            self._end(c, exit_code=c.knobs.exit_code, finished_at=finished)

    def _end(
        self,
        c: _Container,
        *,
        exit_code: int,
        oom: bool = False,
        finished_at: datetime | None = None,
    ) -> None:
        c.status = Status.STOPPED
        c.exit_code = exit_code
        c.oom_killed = oom
        c.finished_at = finished_at or datetime.now(UTC)
        c.deadline = None
        for fut in c.waiters:
            if not fut.done():
                fut.set_result(None)
        c.waiters.clear()

    @staticmethod
    def _snapshot(c: _Container) -> ContainerState:
        return ContainerState(
            id=c.spec.id,
            status=c.status,
            pid=c.pid if c.status in (Status.CREATED, Status.RUNNING) else 0,
            exit_code=c.exit_code,
            oom_killed=c.oom_killed,
            started_at=c.started_at,
            finished_at=c.finished_at,
            labels=dict(c.spec.labels),
        )


def _write_log(path: str, lines: tuple[str, ...], when: datetime) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(f"{stamp} stdout F {line}\n" for line in lines)

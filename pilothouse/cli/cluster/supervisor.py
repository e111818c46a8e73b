"""A small process supervisor, as systemd's `Restart=always`: children that die are started again.

Vocabulary: a *child* is a named long-lived process (`ChildSpec`: argv, env, log file); each
*run* of it is one process. The supervisor restarts a run that ends on its own after a delay
from `RestartPolicy` (0.5 s doubling to 10 s; a run that lasted 30 s resets the delay).

Invariants:
- each run leads a process group of its own (a new session), so signals reach its whole tree
  and a Ctrl-C in the supervisor's terminal never reaches a child directly;
- when a run's leader ends, whatever is left in its group is SIGKILLed before the next run
  (as systemd's KillMode=control-group), so an orphaned helper (etcd under a control plane)
  never holds the port or data the next run needs;
- `<state_dir>/<name>.pid` holds the current run's `ProcessRecord` while a run exists, so a
  later `down` can end the children even if the supervisor was SIGKILLed;
- `stop` is SIGTERM to the group, up to `stop_timeout`, then SIGKILL; after it returns, no
  process of that child runs and its pid file is gone;
- a run is watched through a pidfd and reaped by this supervisor alone, so a run started by
  this process before it exec'd another program (`adopt`, the `keeper`) is supervised exactly
  as one it started itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from pilothouse.cli.cluster import processes

log = structlog.get_logger(__name__)


class SpawnError(RuntimeError):
    """A child's first run could not even be started (missing binary, bad directory)."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0

    def delay(self, failures: int) -> float:
        """The wait before the next run, after `failures` short runs in a row (>= 1)."""
        return min(self.maximum, self.initial * 2 ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    log_path: Path
    env: Mapping[str, str] | None = None  # None: the supervisor's own environment
    cwd: Path | None = None
    stop_timeout: float = 10.0


class _Run:
    """One run of a child: a process of ours, started here (`popen`) or before an exec."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._popen = popen  # held until reaped, so subprocess never waits for it itself
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        self._fd = os.pidfd_open(pid)
        loop.add_reader(self._fd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # not our child (it never should be): count it as gone
            pid, status = self.pid, -1
        if pid == 0:
            return  # not ended yet
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        code = os.waitstatus_to_exitcode(status) if status != -1 else -1
        self.returncode = code
        if self._popen is not None:
            self._popen.returncode = code
            self._popen = None
        self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


@dataclass
class _Child:
    spec: ChildSpec
    process: _Run | None = None
    record: processes.ProcessRecord | None = None
    runs: int = 0
    stopping: bool = False
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Start, watch, restart and stop named children. Use from one event loop."""

    def __init__(self, state_dir: Path, *, policy: RestartPolicy | None = None) -> None:
        self.state_dir = state_dir
        self.policy = policy or RestartPolicy()
        self._children: dict[str, _Child] = {}

    # --- queries -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Children in the order they were started."""
        return list(self._children)

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        if child is None or child.process is None or child.process.returncode is not None:
            return None
        return child.process.pid

    def restarts(self, name: str) -> int:
        return max(0, self._children[name].runs - 1)

    def pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def runs(self) -> list[tuple[ChildSpec, int, int]]:
        """(spec, pid of the current run, runs so far) of each child with a run, in start
        order: what `adopt` takes back after an exec."""
        return [
            (c.spec, c.process.pid, c.runs)
            for c in self._children.values()
            if c.process is not None and c.process.returncode is None
        ]

    # --- control -------------------------------------------------------------------------

    async def start(self, spec: ChildSpec) -> int:
        """Start `spec`'s first run and keep it running; returns its pid."""
        if spec.name in self._children:
            raise ValueError(f"child {spec.name!r} is already supervised")
        child = _Child(spec=spec)
        self._children[spec.name] = child
        try:
            await self._spawn(child)
        except OSError as exc:
            del self._children[spec.name]
            raise SpawnError(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from exc
        child.task = asyncio.create_task(self._watch(child), name=f"supervise:{spec.name}")
        assert child.process is not None
        return child.process.pid

    def adopt(self, spec: ChildSpec, pid: int, *, runs: int = 1) -> None:
        """Supervise `pid`, a run of `spec` this process started before it exec'd (so still
        its child), as if `start` had started it."""
        if spec.name in self._children:
            raise ValueError(f"child {spec.name!r} is already supervised")
        child = _Child(spec=spec, runs=runs)
        try:
            child.process = _Run(pid)
        except ProcessLookupError:  # it ended and was reaped meanwhile: start it again
            child.runs -= 1
            child.process = None
        self._children[spec.name] = child
        child.task = asyncio.create_task(self._watch(child), name=f"supervise:{spec.name}")

    def update(self, name: str, *, argv: Sequence[str]) -> None:
        """Use `argv` from the next run on (e.g. the address the first run bound, for keeps)."""
        child = self._children[name]
        child.spec = replace(child.spec, argv=tuple(argv))

    async def stop(self, name: str) -> int | None:
        """Stop supervising `name` and end its run; returns the run's exit code, if any."""
        child = self._children.pop(name, None)
        if child is None:
            return None
        child.stopping = True
        if child.task is not None:
            child.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child.task
        code = await self._end(child)
        processes.remove(self.pid_file(name))
        log.info("child.stopped", child=name, exit_code=code)
        return code

    async def stop_all(self) -> None:
        """Stop every child, the last started first."""
        for name in reversed(self.names()):
            await self.stop(name)

    # --- internals -----------------------------------------------------------------------

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as output:
            # Not an asyncio subprocess: asyncio's child watcher would reap it, and a run must
            # outlive this program when it execs the keeper (see `_Run`).
            popen = subprocess.Popen(  # noqa: ASYNC220
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=None if spec.env is None else dict(spec.env),
                cwd=spec.cwd,
                start_new_session=True,
            )
        child.process = _Run(popen.pid, popen)
        child.runs += 1
        child.record = processes.write(self.pid_file(spec.name), child.process.pid)
        log.info("child.started", child=spec.name, pid=child.process.pid, run=child.runs)

    async def _watch(self, child: _Child) -> None:
        """Wait for each run to end and start the next one, with backoff."""
        loop = asyncio.get_running_loop()
        failures = 0
        if child.process is None:  # adopted, but it had already ended
            await self._respawn(child, failures)
        while True:
            process = child.process
            assert process is not None
            began = loop.time()
            code = await process.wait()
            lasted = loop.time() - began
            self._kill_leftovers(child)
            failures = 1 if lasted >= self.policy.reset_after else failures + 1
            delay = self.policy.delay(failures)
            log.warning(
                "child.exited",
                child=child.spec.name,
                pid=process.pid,
                exit_code=code,
                ran_s=round(lasted, 2),
                restart_in_s=delay,
            )
            await asyncio.sleep(delay)
            failures = await self._respawn(child, failures)

    async def _respawn(self, child: _Child, failures: int) -> int:
        """Start the child's next run, retrying with backoff; the failures counted."""
        while True:
            try:
                await self._spawn(child)
                return failures
            except OSError as exc:
                failures += 1
                delay = self.policy.delay(failures)
                log.error(
                    "child.spawn_failed", child=child.spec.name, error=str(exc), retry_s=delay
                )
                await asyncio.sleep(delay)

    def _kill_leftovers(self, child: _Child) -> None:
        """SIGKILL what remains in an ended run's process group."""
        if child.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)

    async def _end(self, child: _Child) -> int | None:
        process = child.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(child.spec.stop_timeout):
                    await process.wait()
            except TimeoutError:
                log.warning(
                    "child.killed",
                    child=child.spec.name,
                    pid=process.pid,
                    after_s=child.spec.stop_timeout,
                )
        self._kill_leftovers(child)
        code = await process.wait()
        await _group_gone(process.pid)
        return code


async def _group_gone(pgid: int, *, within: float = 2.0) -> None:
    """Wait until no process of group `pgid` is left (SIGKILLed ones take a moment to go)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while processes.group_members(pgid):
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.01)

"""Runnables: the long-lived parts of a process, run together under one TaskGroup.

Vocabulary: a *runnable* is anything with a `name` and an `async run()` (in the control plane
the API server, the embedded etcd, each controller, the scheduler …; in the agent the pod
manager, its API server, registration …).

Leadership: a runnable that acts on the cluster and must run on one control-plane member at a
time (a controller, the scheduler, node lifecycle, node sync) declares `needs_leadership =
True` (`needs_leadership(r)` reads it; absent means False). `run_all(parts)` refuses such a
part: only the control plane's leadership runs them, with `run_all(team, leading=True)` for
each term of leadership, which in turn refuses parts that do not declare it. A part put on the
wrong side is a wiring error found at start-up, not two schedulers running at once.

Invariants:
- `run()` returns only when cancelled. A runnable that returns or raises on its own is a bug
  or a fatal failure: `run_all` logs it loudly (`runnable.exited` / `runnable.failed`), cancels
  every other runnable and raises `RunnableExited`, so the process exits non-zero instead of
  limping on without one of its parts.
- Each runnable runs in a task named after it, so a task dump shows who is who.
- They stop in the reverse order of the list (each one finished before the next is
  cancelled), so a part listed first, like the store, outlives those that use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)


@runtime_checkable
class Runnable(Protocol):
    name: str

    async def run(self) -> None: ...


class RunnableExited(RuntimeError):
    """A runnable stopped although nobody cancelled it."""

    def __init__(self, name: str, error: BaseException | None = None) -> None:
        self.name = name
        self.error = error
        why = f"failed: {error!r}" if error is not None else "returned"
        super().__init__(f"runnable {name!r} {why}; it must run until the process stops")


def needs_leadership(runnable: Runnable) -> bool:
    """Whether `runnable` runs only on the leader (it says so with `needs_leadership`)."""
    return bool(getattr(runnable, "needs_leadership", False))


@dataclass(slots=True)
class Task:
    """A runnable made from a coroutine function: `Task("api", serve)`."""

    name: str
    target: Callable[[], Awaitable[None]]
    needs_leadership: bool = False

    async def run(self) -> None:
        await self.target()


async def run_all(runnables: Sequence[Runnable], *, leading: bool = False) -> None:
    """Run every runnable until cancelled (returns normally then) or until one stops.

    Raises `RunnableExited` naming the first runnable that stopped on its own. With `leading`
    (a term of leadership) every runnable must declare `needs_leadership`; without it none
    may (`ValueError`, see the module docstring).
    """
    names = [r.name for r in runnables]
    if len(set(names)) != len(names):
        raise ValueError(f"runnable names must be unique, got {names}")
    misplaced = [r.name for r in runnables if needs_leadership(r) != leading]
    if misplaced:
        raise ValueError(
            f"runnables {misplaced} "
            + (
                "do not declare needs_leadership, but run in a term of leadership"
                if leading
                else "declare needs_leadership: only the control plane's leadership runs them"
            )
        )
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_guard(r), name=r.name) for r in runnables]
            log.debug("runnables.started", runnables=names)
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:
                await _stop_in_reverse(tasks)
                raise
    except* RunnableExited as failures:
        raise failures.exceptions[0] from None


async def _stop_in_reverse(tasks: list[asyncio.Task[None]]) -> None:
    for task in reversed(tasks):
        task.cancel()
        await asyncio.wait([task])


async def _guard(runnable: Runnable) -> None:
    try:
        await runnable.run()
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.error("runnable.failed", runnable=runnable.name, exc_info=True)
        raise RunnableExited(runnable.name, error) from error
    log.error("runnable.exited", runnable=runnable.name)
    raise RunnableExited(runnable.name)

"""The controller: a work queue, N workers, and one reconciler (the engine's loop).

Invariants (the only place that decides retries, as in controller-runtime):
- reconcile returns `Result()` -> the key's backoff is forgotten;
- `Result(requeue_after=s)` -> forgotten, and the key comes back after `s` seconds;
- raises `Terminal` -> logged, forgotten, not retried (a person must change something);
- raises anything else -> logged, retried with the key's exponential backoff.
A key is reconciled by one worker at a time (the queue guarantees it). Workers start only once
every informer in `wait_for` has synced, so a reconciler never acts on a half-filled cache.
`follow(informers, keys)` is how a controller hears of changes: every notice of those informers
enqueues the keys `keys(notice)` names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import structlog

from controlplane import metrics
from controlplane.reconcile import Reconciler, Terminal
from controlplane.reconcile.clock import Clock, SystemClock
from controlplane.reconcile.queue import Backoff, ShutDown, WorkQueue
from controlplane.store import Conflict, StoreError

log = structlog.get_logger(__name__)


class Synced(Protocol):
    async def wait_synced(self) -> None: ...


class Notifying(Protocol):
    """What delivers notices (an informer: `controlplane.cache.Informer`)."""

    def add_handler(self, handler: Callable[[Any], None]) -> None: ...


# The key (or keys) a notice means for a controller; None: none.
KeysFor = Callable[[Any], "str | Iterable[str] | None"]


class Controller:
    """Runs `reconciler.reconcile(key)` for every key added to `queue`. A Runnable that runs
    only on the control plane's leader (`needs_leadership`)."""

    needs_leadership = True

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        workers: int = 2,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        wait_for: Sequence[Synced] = (),
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.workers = workers
        self.queue = WorkQueue(clock=clock or SystemClock(), backoff=backoff)
        self._wait_for = tuple(wait_for)

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def follow(self, sources: Iterable[Notifying], keys: KeysFor) -> None:
        """Enqueue what `keys(notice)` names for every notice of each of `sources`."""

        def enqueue(notice: Any) -> None:
            found = keys(notice)
            if found is None:
                return
            for key in (found,) if isinstance(found, str) else found:
                self.queue.add(key)

        for source in sources:
            source.add_handler(enqueue)

    async def run(self) -> None:
        for informer in self._wait_for:
            await informer.wait_synced()
        log.info("controller.started", controller=self.name, workers=self.workers)
        metrics.controller_started(self)  # its queue depth, while it lives
        try:
            async with asyncio.TaskGroup() as group:
                for index in range(self.workers):
                    group.create_task(self._work(), name=f"{self.name}.worker-{index}")
        finally:
            self.queue.shut_down()

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: str) -> None:
        """Reconcile one key and decide what happens to it next (see module docstring)."""
        began = time.perf_counter()
        outcome = "error"
        try:
            result = await self.reconciler.reconcile(key)
            outcome = "requeue" if result.requeue_after is not None else "success"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Terminal as error:
            outcome = "terminal"
            self.queue.forget(key)
            log.error("controller.terminal_error", controller=self.name, key=key, error=str(error))
            return
        except Conflict:
            outcome = "conflict"
            # Acted on a cache a step behind a write: routine, try again with fresher state.
            delay = self.queue.add_rate_limited(key)
            log.debug("controller.conflict", controller=self.name, key=key, retry_in=delay)
            return
        except Exception as error:
            delay = self.queue.add_rate_limited(key)
            log.warning(
                "controller.reconcile_failed",
                controller=self.name,
                key=key,
                error=f"{type(error).__name__}: {error}",
                retry_in=round(delay, 3),
                failures=self.queue.failures(key),
                exc_info=not _expected(error),
            )
            return
        finally:
            if outcome != "cancelled":
                metrics.reconciled(self.name, outcome, time.perf_counter() - began)
        self.queue.forget(key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)


def _expected(error: Exception) -> bool:
    """Store errors (conflicts, outages) are routine: no traceback in the log."""
    return isinstance(error, StoreError)

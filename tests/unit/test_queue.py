"""The work queue and the controller loop: no key lost, none worked on twice at once,
failures retried with growing delays (on virtual time), terminal errors left alone."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from controlplane.reconcile import Result, Terminal
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.reconcile.controller import Controller
from controlplane.reconcile.queue import Backoff, ShutDown, WorkQueue


async def test_adding_a_key_twice_hands_it_out_once() -> None:
    queue = WorkQueue(clock=ManualClock())
    queue.add("default/web")
    queue.add("default/web")
    queue.add("default/db")
    assert len(queue) == 2, "a key added twice was queued twice"
    assert [await queue.get(), await queue.get()] == ["default/web", "default/db"]


async def test_key_added_while_processing_is_handed_out_again_after_done() -> None:
    queue = WorkQueue(clock=ManualClock())
    queue.add("k")
    key = await queue.get()
    queue.add("k")  # a change arrives while a worker holds the key
    assert len(queue) == 0, "the key was handed out again while still being processed"
    queue.done(key)
    assert len(queue) == 1, "the change that arrived during processing was lost"
    assert await queue.get() == "k"


async def test_get_waits_for_an_add_and_shut_down_releases_waiters() -> None:
    queue = WorkQueue(clock=ManualClock())
    waiter = asyncio.create_task(queue.get())
    await settle()
    assert not waiter.done()
    queue.add("late")
    assert await waiter == "late"
    blocked = asyncio.create_task(queue.get())
    await settle()
    queue.shut_down()
    with pytest.raises(ShutDown):
        await blocked


async def test_add_after_fires_on_virtual_time_and_earliest_deadline_wins() -> None:
    clock = ManualClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("k", 10)
    queue.add_after("k", 3)
    queue.add_after("k", 20)  # later than a pending deadline: ignored
    await settle()
    await clock.advance(2.9)
    assert len(queue) == 0
    await clock.advance(0.2)
    assert len(queue) == 1, "add_after(3 s) had not fired after 3.1 s"
    await queue.get()
    queue.done("k")
    await clock.advance(30)
    assert len(queue) == 0, "superseded timers added the key again"


def test_backoff_doubles_from_5ms_to_30s() -> None:
    backoff = Backoff()
    delays = [backoff.delay(n) for n in range(15)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 30.0
    assert all(b >= a for a, b in itertools.pairwise(delays))


class Flaky:
    """Fails `failures` times per key, then succeeds; records concurrency."""

    def __init__(self, failures: int = 0, *, requeue_after: float | None = None) -> None:
        self.failures = failures
        self.requeue_after = requeue_after
        self.calls: Counter[str] = Counter()
        self.active: set[str] = set()
        self.overlaps = 0
        self.release = asyncio.Event()
        self.release.set()

    async def reconcile(self, key: str) -> Result:
        if key in self.active:
            self.overlaps += 1
        self.active.add(key)
        try:
            await self.release.wait()
            self.calls[key] += 1
            if key == "terminal":
                raise Terminal("spec.replicas is negative")
            if self.calls[key] <= self.failures:
                raise RuntimeError("store hiccup")
            return Result(requeue_after=self.requeue_after)
        finally:
            self.active.discard(key)


async def start(controller: Controller) -> asyncio.Task[None]:
    task = asyncio.create_task(controller.run())
    await settle()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_controller_never_reconciles_one_key_in_two_workers() -> None:
    reconciler = Flaky()
    reconciler.release.clear()
    controller = Controller("test", reconciler, workers=4, clock=ManualClock())
    task = await start(controller)
    try:
        controller.enqueue("a")
        await settle()
        for _ in range(5):
            controller.enqueue("a")  # re-added while the first pass is blocked
            controller.enqueue("b")
        await settle()
        reconciler.release.set()
        await settle()
        assert reconciler.overlaps == 0, "two workers reconciled the same key at once"
        assert reconciler.calls == {"a": 2, "b": 1}, (
            f"expected one pass plus one for the changes seen meanwhile, got {reconciler.calls}"
        )
    finally:
        await stop(task)


async def test_failures_retry_with_growing_backoff_then_forget() -> None:
    clock = ManualClock()
    reconciler = Flaky(failures=3)
    controller = Controller("test", reconciler, workers=1, clock=clock)
    task = await start(controller)
    try:
        controller.enqueue("k")
        await settle()
        assert reconciler.calls["k"] == 1
        await clock.advance(0.004)
        assert reconciler.calls["k"] == 1, "retried before the first 5 ms backoff"
        await clock.advance(0.001)
        assert reconciler.calls["k"] == 2
        await clock.advance(0.009)
        assert reconciler.calls["k"] == 2, "second retry came before 10 ms"
        await clock.advance(0.001)
        assert reconciler.calls["k"] == 3
        await clock.advance(0.02)
        assert reconciler.calls["k"] == 4, "third retry did not come after 20 ms"
        assert controller.queue.failures("k") == 0, "success did not reset the backoff"
        await clock.advance(60)
        assert reconciler.calls["k"] == 4, "a key that succeeded was reconciled again"
    finally:
        await stop(task)


async def test_terminal_error_is_not_retried_and_requeue_after_is_honoured() -> None:
    clock = ManualClock()
    reconciler = Flaky(requeue_after=5)
    controller = Controller("test", reconciler, workers=2, clock=clock)
    task = await start(controller)
    try:
        controller.enqueue("terminal")
        controller.enqueue("periodic")
        await settle()
        await clock.advance(4.9)
        assert reconciler.calls == {"terminal": 1, "periodic": 1}
        await clock.advance(0.2)
        assert reconciler.calls["periodic"] == 2, "requeue_after=5 did not bring the key back"
        await clock.advance(120)
        assert reconciler.calls["terminal"] == 1, "a Terminal error was retried"
    finally:
        await stop(task)

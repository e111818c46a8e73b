"""EventWriter keeps writing whatever agents report, even when reports arrive mid-write.

What a user would see go wrong otherwise: a node's pod events stop arriving and, since the
writer runs beside the node's sync, the node's pods start seconds late.
"""

from __future__ import annotations

import asyncio

from controlplane.events import EventWriter
from controlplane.reconcile.clock import ManualClock, settle
from pilothouse.v1 import objects_pb2
from tests.unit.nodesync_support import make_pod
from tests.unit.test_nodesync_events import T0, agent_event


async def test_an_event_reported_while_another_is_being_written_is_written_too() -> None:
    clock = ManualClock(start=float(T0))
    gate = asyncio.Event()
    merged: list[str] = []

    class SlowRecorder:
        async def merge(self, event: objects_pb2.Event) -> None:
            await gate.wait()
            merged.append(event.message)

    writer = EventWriter(SlowRecorder(), clock=clock)  # type: ignore[arg-type]
    pod = make_pod("web-1", "n1")
    pod.metadata.uid = "uid-1"
    writer.add(agent_event(pod, message="first"))
    task = asyncio.create_task(writer.run())
    try:
        await settle()
        writer.add(agent_event(pod, message="second"))  # while "first" is being written
        gate.set()
        await settle()
        assert not task.done(), f"the event writer died: {task.exception()!r}"
        assert merged == ["first", "second"], f"events written: {merged}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_wait_for_status_writes_but_never_longer_than_max_hold() -> None:
    """Pod statuses (what `get pods` shows) go before events; events still arrive."""
    clock = ManualClock(start=float(T0))
    statuses_done = asyncio.Event()
    merged: list[str] = []

    class Recorder:
        async def merge(self, event: objects_pb2.Event) -> None:
            merged.append(event.message)

    writer = EventWriter(
        Recorder(),  # type: ignore[arg-type]
        clock=clock,
        yield_to=statuses_done.wait,
        max_hold=2.0,
    )
    pod = make_pod("web-1", "n1")
    pod.metadata.uid = "uid-1"
    writer.add(agent_event(pod, message="first"))
    task = asyncio.create_task(writer.run())
    try:
        await settle()
        assert merged == [], "an event was written while pod statuses were waiting"
        statuses_done.set()
        await settle()
        assert merged == ["first"], "the event was not written once the statuses were"
        statuses_done.clear()
        writer.add(agent_event(pod, message="second"))
        await settle()
        await clock.advance(1.0)
        assert merged == ["first"], "an event was written while pod statuses were waiting"
        await clock.advance(1.1)
        assert merged == ["first", "second"], "an event waited longer than max_hold"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""Events expire an hour after they were last recorded (controllers/eventttl)."""

from __future__ import annotations

from controlplane.controllers.eventttl import EventExpiry
from controlplane.events import EventRecorder, EventType
from controlplane.objects import ObjectStore
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from tests import factories


async def test_an_event_goes_an_hour_after_it_was_last_recorded() -> None:
    now = [1_700_000_000.0]
    objects = ObjectStore(MemoryStore(), clock=lambda: now[0])
    recorder = EventRecorder(objects, component="test", clock=_Clock(now))
    pod = await objects.create(factories.pod(name="old"))
    fresh = await objects.create(factories.pod(name="fresh"))
    await recorder.record(pod, EventType.NORMAL, "Started", "started")
    now[0] += 1800
    await recorder.record(fresh, EventType.NORMAL, "Started", "started")
    expiry = EventExpiry(objects, now=lambda: now[0])
    assert await expiry.sweep() == 0
    now[0] += 1801  # the first is 3601 s old, the second 1801 s
    assert await expiry.sweep() == 1
    left = (await objects.list(Kind.EVENT, None)).items
    assert [e.involved_object.name for e in left] == ["fresh"]
    # Recorded again: the hour starts over.
    await recorder.record(fresh, EventType.NORMAL, "Started", "started")
    now[0] += 3000
    assert await expiry.sweep() == 0


class _Clock:
    def __init__(self, now: list[float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now[0]

    async def sleep(self, seconds: float) -> None:
        return None

"""Events expire: an Event not recorded again for an hour is deleted, as the Kubernetes API
server's event TTL (`--event-ttl`, 1 h) does.

Kubernetes gives each event an etcd lease; here a leader-only pass every `interval` seconds
lists the events and deletes those whose last recording (lastTimestamp, else
firstTimestamp, else creation) is older than `ttl`. Level-triggered: a pass that fails or a
leader that changes only delays expiry to the next pass.

Invariants: a delete is conditional on the resourceVersion read, so an event recorded again
meanwhile (its count bumped) is kept; store errors end the pass, never the runnable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from controlplane.objects import ObjectStore
from controlplane.store import Conflict, NotFound, StoreError
from pilothouse.conditions import seconds
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

DEFAULT_TTL = 3600.0
DEFAULT_INTERVAL = 60.0


def last_recorded(event: objects_pb2.Event) -> float:
    for stamp in (event.last_timestamp, event.first_timestamp, event.metadata.creation_timestamp):
        if stamp.seconds or stamp.nanos:
            return seconds(stamp)
    return 0.0


class EventExpiry:
    name = "controller.eventttl"
    needs_leadership = True  # deletes: one member at a time

    def __init__(
        self,
        objects: ObjectStore,
        *,
        ttl: float = DEFAULT_TTL,
        interval: float = DEFAULT_INTERVAL,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self.ttl = ttl
        self.interval = interval
        self._now = now

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except StoreError as error:
                log.warning("events.expiry_failed", error=str(error))
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """Delete every expired event; how many were deleted."""
        listing = await self._objects.list(Kind.EVENT, None)
        cutoff = self._now() - self.ttl
        deleted = 0
        for event in listing.items:
            if last_recorded(event) >= cutoff:
                continue
            with contextlib.suppress(NotFound, Conflict):
                await self._objects.delete(
                    Kind.EVENT,
                    event.metadata.namespace,
                    event.metadata.name,
                    resource_version=event.metadata.resource_version,
                )
                deleted += 1
        if deleted:
            log.info("events.expired", count=deleted, ttl=self.ttl)
        return deleted

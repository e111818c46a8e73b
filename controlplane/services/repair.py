"""The repair of allocations: what a crash left reserved is freed, what is missing is re-taken.

Kubernetes runs the same pass (its `repair` controllers for service IPs and node ports): an
Apply reserves before it writes the Service and a Delete releases after it removed it, so a
control plane that dies between the two leaves a key without a Service, or a Service without
its keys (restored from a backup, written by an older version).

Every `interval` seconds (and once at start):
- a key whose owner's stored Service does not hold that value is deleted, but only once it is
  older than `grace` (an Apply may have reserved it a moment ago and not written yet), and
  only as it was read (conditional on its revision);
- a value a stored Service holds with no key is reserved for it; one held by another owner
  is logged (two Services with one address: a person must delete one).

Invariant: the pass changes nothing that a concurrent Apply or Delete could be using (the
grace period and the revision-conditional delete), so it is safe on every control plane.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from controlplane.objects import ObjectStore
from controlplane.services.addresses import ServiceAddresses, holdings, owner_of
from controlplane.services.allocator import Allocator
from controlplane.store import StoreError
from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)

INTERVAL_S = 60.0
GRACE_S = 60.0


class AllocationRepair:
    """A Runnable: repairs the ClusterIP and NodePort allocations now and then."""

    name = "services.repair"

    def __init__(
        self,
        objects: ObjectStore,
        addresses: ServiceAddresses,
        *,
        interval: float = INTERVAL_S,
        grace: float = GRACE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._objects = objects
        self._addresses = addresses
        self._interval = interval
        self._grace = grace
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.repair()
            except StoreError as error:
                log.warning("services.repair_failed", error=str(error))
            await asyncio.sleep(self._interval)

    async def repair(self) -> tuple[int, int]:
        """One pass; returns (keys freed, keys re-taken)."""
        listing = await self._objects.list(Kind.SERVICE)
        wanted_ips: dict[str, str] = {}
        wanted_ports: dict[str, str] = {}
        for svc in listing.items:
            ips, ports = holdings(svc)
            for ip in ips:
                wanted_ips[ip] = owner_of(svc)
            for port in ports:
                wanted_ports[port] = owner_of(svc)
        freed = taken = 0
        for allocator, wanted in (
            (self._addresses.ips, wanted_ips),
            (self._addresses.ports, wanted_ports),
        ):
            f, t = await self._repair(allocator, wanted)
            freed, taken = freed + f, taken + t
        if freed or taken:
            log.info("services.repaired", freed=freed, retaken=taken)
        return freed, taken

    async def _repair(self, allocator: Allocator, wanted: dict[str, str]) -> tuple[int, int]:
        freed = taken = 0
        held = await allocator.held()
        now = self._clock()
        for item in held:
            if wanted.get(item.value) == item.owner or now - item.taken_at < self._grace:
                continue
            if await allocator.forget(item):
                freed += 1
                log.info(
                    "services.allocation_freed",
                    pool=allocator.pool.name,
                    value=item.value,
                    owner=item.owner,
                )
        holders = {item.value: item.owner for item in held}
        for value, owner in wanted.items():
            if holders.get(value) == owner:
                continue
            if value in holders:
                log.error(
                    "services.allocation_conflict",
                    pool=allocator.pool.name,
                    value=value,
                    service=owner,
                    held_by=holders[value],
                )
                continue
            if await allocator.reserve(value, owner):
                taken += 1
        return freed, taken

"""Allocations of ClusterIPs and NodePorts: one store key per value held, made by create.

`Allocator(store, pool)` reserves values of one `Pool` (`ClusterIPs` or `NodePorts`) for
owners ("namespace/name" of a Service):
- `reserve(value, owner)`: take a requested value; True if `owner` now holds it (also when it
  already did), False if another owner does;
- `allocate(owner)`: take any free value, chosen at random (so two control planes allocating
  at once rarely collide, and when they do, the create of one fails and it picks again);
- `release(value, owner)`: give it back, only if `owner` still holds it (a delete conditional
  on the key's revision, so a value re-taken meanwhile by someone else stays theirs);
- `held()`: every value held, with its owner, the key's revision and when it was taken.

Invariants: the store's create-if-absent is the only way a value becomes held, so the keys are
the truth across restarts and control planes; nothing is cached between calls.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from controlplane.store import AlreadyExists, Conflict, NotFound, Store

PREFIX = "/pilothouse/ranges/"
_ATTEMPTS = 32


class Exhausted(Exception):
    """Every value of the pool is held."""


class Pool(Protocol):
    name: str  # the key segment: "serviceips", "servicenodeports"

    def contains(self, value: str) -> bool: ...

    def random(self, rng: random.Random) -> str: ...

    def all(self) -> Iterator[str]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ClusterIPs:
    """The usable addresses of the service CIDR (neither its network nor broadcast address)."""

    network: ipaddress.IPv4Network
    name: str = "serviceips"

    def contains(self, value: str) -> bool:
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            return False
        return address in self.network and address not in (
            self.network.network_address,
            self.network.broadcast_address,
        )

    def random(self, rng: random.Random) -> str:
        first = int(self.network.network_address) + 1
        return str(
            ipaddress.IPv4Address(rng.randint(first, first + self.network.num_addresses - 3))
        )

    def all(self) -> Iterator[str]:
        return (str(a) for a in self.network.hosts())

    def describe(self) -> str:
        return str(self.network)


@dataclass(frozen=True, slots=True)
class NodePorts:
    low: int
    high: int
    name: str = "servicenodeports"

    def contains(self, value: str) -> bool:
        return value.isdigit() and self.low <= int(value) <= self.high

    def random(self, rng: random.Random) -> str:
        return str(rng.randint(self.low, self.high))

    def all(self) -> Iterator[str]:
        return (str(p) for p in range(self.low, self.high + 1))

    def describe(self) -> str:
        return f"{self.low}-{self.high}"


@dataclass(frozen=True, slots=True)
class Held:
    value: str
    owner: str
    revision: int
    taken_at: float


class Allocator:
    def __init__(
        self,
        store: Store,
        pool: Pool,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pool = pool
        self._rng = rng or random.Random()
        self._clock = clock

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.pool.name}/"

    def key(self, value: str) -> str:
        return self.prefix + value

    async def owner(self, value: str) -> str | None:
        try:
            entry = await self.store.get(self.key(value))
        except NotFound:
            return None
        return _decode(entry.value)[0]

    async def reserve(self, value: str, owner: str) -> bool:
        """Hold `value` for `owner`; False when another owner holds it."""
        for _ in range(_ATTEMPTS):
            try:
                await self.store.create(self.key(value), self._encode(owner))
                return True
            except AlreadyExists:
                pass
            holder = await self.owner(value)
            if holder is not None:
                return holder == owner
            # Released between our create and our read: try again.
        return False

    async def allocate(self, owner: str) -> str:
        """Hold a free value for `owner`, chosen at random; `Exhausted` when none is free."""
        taken = {h.value for h in await self.held()}
        for _ in range(_ATTEMPTS):
            value = self.pool.random(self._rng)
            if value in taken:
                continue
            try:
                await self.store.create(self.key(value), self._encode(owner))
                return value
            except AlreadyExists:
                taken.add(value)
        free = [v for v in self.pool.all() if v not in taken]
        self._rng.shuffle(free)
        for value in free:
            try:
                await self.store.create(self.key(value), self._encode(owner))
                return value
            except AlreadyExists:
                continue
        raise Exhausted(f"every value of {self.pool.describe()} is allocated")

    async def release(self, value: str, owner: str) -> bool:
        """Give `value` back if `owner` holds it; True when it was released here."""
        try:
            entry = await self.store.get(self.key(value))
        except NotFound:
            return False
        if _decode(entry.value)[0] != owner:
            return False
        try:
            await self.store.delete(entry.key, expected_revision=entry.revision)
        except (NotFound, Conflict):
            return False
        return True

    async def held(self) -> list[Held]:
        listing = await self.store.list(self.prefix)
        found = []
        for entry in listing.entries:
            owner, at = _decode(entry.value)
            found.append(Held(entry.key[len(self.prefix) :], owner, entry.revision, at))
        return found

    async def forget(self, held: Held) -> bool:
        """Delete a key exactly as `held` saw it (the repair of a leak)."""
        try:
            await self.store.delete(self.key(held.value), expected_revision=held.revision)
        except (NotFound, Conflict):
            return False
        return True

    def _encode(self, owner: str) -> bytes:
        return json.dumps({"owner": owner, "at": round(self._clock(), 3)}).encode()


def _decode(value: bytes) -> tuple[str, float]:
    try:
        data = json.loads(value)
        return str(data.get("owner", "")), float(data.get("at", 0))
    except (ValueError, AttributeError):
        return "", 0.0

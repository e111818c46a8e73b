"""The election: sessions (lease + campaign key + keep-alive), campaigns and terms.

See the package docstring for the vocabulary. `Election.campaign()` returns a `Term` once
this member leads; the session's keeper goes on renewing the lease and sets `term.lost` (with
a `LossReason`) when it cannot. `Election.resign(term)` ends a term on purpose (a clean stop):
it revokes the lease, so the next member leads at once.

Timing: the keeper renews every ttl/3. After each acknowledged renewal the lease is known to
live until (send time + granted TTL) on the etcd side; the keeper declares the session lost
`margin` seconds before that deadline if no later renewal was acknowledged. A renewal that
hangs is cut off at that point too. Everything here reads one monotonic clock, which keeps
counting while the process is stopped, so a member resumed after SIGSTOP sees at once that
its deadline has passed.

A member's previous run: a campaign key older than ours with our own member name belongs to a
process of this member that is gone (a restart, a crash: one process runs a member). Its
lease is revoked at once instead of waited out (up to its TTL): fencing makes that safe even
if the old process still ran, since its writes need its key.

Renewals run on a `LeaseKeeper`'s thread when the election is given one (the control plane
gives it one), so a busy event loop cannot starve them; only the loss of the session comes
back to the election's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import structlog

from controlplane.leader.keeper import LeaseKeeper
from controlplane.leader.writes import CountedFencedStore, WriteCounts
from controlplane.store import (
    Entry,
    EventType,
    Fence,
    NotFound,
    Store,
    StoreError,
)

log = structlog.get_logger(__name__)

DEFAULT_PREFIX = "/pilothouse/leader/controlplane/"
DEFAULT_TTL = 2
DEFAULT_MARGIN = 0.25
_RETRY = 0.2
_MAX_RETRY = 2.0


class LossReason(enum.Enum):
    RENEWAL_FAILED = "RenewalFailed"  # no renewal acknowledged before the deadline
    LEASE_EXPIRED = "LeaseExpired"  # etcd says the lease is gone
    KEY_DELETED = "KeyDeleted"  # the campaign key went (someone deleted it)
    RESIGNED = "Resigned"  # a clean stop


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a member says about itself in its campaign key."""

    name: str
    address: str = ""  # its API, "HOST:PORT"
    etcd: str = ""  # the etcd endpoint it runs (embedded) or "" (external)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Candidate:
        try:
            data = json.loads(value)
            return cls(
                name=str(data.get("name", "")),
                address=str(data.get("address", "")),
                etcd=str(data.get("etcd", "")),
            )
        except (ValueError, AttributeError):
            return cls(name="?")


@dataclass(eq=False)
class Term:
    """One term of this member as leader."""

    fence: Fence
    lease: int
    candidate: Candidate
    started: float  # wall clock, for people
    _session: _Session
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: LossReason | None = None

    @property
    def revision(self) -> int:
        return self.fence.revision

    def valid(self) -> bool:
        """Whether this member may still act as leader (its lease cannot have expired)."""
        return not self.lost.is_set() and self._session.alive()

    def end(self, reason: LossReason) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


class _SessionLost(Exception):
    """The session's lease or key is gone: campaign again with a new one."""


class _Session:
    """A lease, its campaign key, and the task that keeps the lease alive."""

    def __init__(
        self,
        store: Store,
        *,
        lease: int,
        ttl: int,
        key: str,
        create_revision: int,
        deadline: float,
        margin: float,
        clock: Callable[[], float],
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.key = key
        self.create_revision = create_revision
        self.deadline = deadline
        self._margin = margin
        self._clock = clock
        self.lost = asyncio.Event()
        self.reason: LossReason | None = None
        self.term: Term | None = None
        self._keeper = keeper
        self._home = asyncio.get_running_loop()
        self._renewing: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        return not self.lost.is_set() and self._clock() < self.deadline - self._margin

    async def start(self) -> None:
        """Start renewing: on the keeper's thread when there is one, else on this loop."""
        if self._keeper is not None:
            self._renewing = await self._keeper.spawn(self._keep)
        else:
            self._renewing = asyncio.create_task(
                self._keep(self.store), name=f"leader.keepalive.{self.lease:x}"
            )

    def lose(self, reason: LossReason) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        if self.term is not None:
            self.term.end(reason)

    def _lose_from_renewal(self, reason: LossReason) -> None:
        """`lose`, called from wherever the renewals run (the keeper's thread or this loop)."""
        if self._keeper is None:
            self.lose(reason)
        else:
            self._home.call_soon_threadsafe(self.lose, reason)

    async def _keep(self, store: Store) -> None:
        interval = self.ttl / 3
        failing = False
        while True:
            give_up = self.deadline - self._margin
            if self._clock() >= give_up:
                self._lose_from_renewal(LossReason.RENEWAL_FAILED)
                log.warning("leader.renewal_failed", lease=f"{self.lease:x}", key=self.key)
                return
            sent = self._clock()
            try:
                async with asyncio.timeout(give_up - sent):
                    granted = await store.keep_alive(self.lease)
            except NotFound:
                self._lose_from_renewal(LossReason.LEASE_EXPIRED)
                log.warning("leader.lease_expired", lease=f"{self.lease:x}", key=self.key)
                return
            except (StoreError, TimeoutError) as error:
                if not failing:
                    log.warning(
                        "leader.renewal_retry",
                        lease=f"{self.lease:x}",
                        error=str(error) or "timeout",
                    )
                failing = True
                await asyncio.sleep(
                    min(_RETRY, max(self.deadline - self._margin - self._clock(), 0))
                )
                continue
            if failing:
                log.info("leader.renewal_restored", lease=f"{self.lease:x}")
                failing = False
            self.deadline = max(self.deadline, sent + granted)
            wait = min(interval, self.deadline - self._margin - self._clock())
            await asyncio.sleep(max(wait, 0.0))

    async def close(self, *, revoke: bool, revoke_within: float = 1.0) -> None:
        """Stop renewing; with `revoke`, end the lease now (its key goes with it)."""
        renewing, self._renewing = self._renewing, None
        if renewing is not None and self._keeper is not None:
            await self._keeper.cancel(renewing)
        elif renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        if revoke:
            try:
                async with asyncio.timeout(revoke_within):
                    await self.store.revoke_lease(self.lease)
            except (StoreError, TimeoutError) as error:
                log.warning("leader.revoke_failed", lease=f"{self.lease:x}", error=str(error))


class Election:
    """Campaigns for leadership of `prefix` as `candidate` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        candidate: Candidate,
        ttl: int = DEFAULT_TTL,
        prefix: str = DEFAULT_PREFIX,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"a leader lease needs a TTL of at least 1 s, got {ttl}")
        self.store = store
        self.candidate = candidate
        self.ttl = ttl
        self.prefix = prefix
        self.margin = margin
        self._clock = clock
        self._keeper = keeper
        self.writes = WriteCounts()
        self.term: Term | None = None

    async def campaign(self) -> Term:
        """Return once this member leads; retries through store outages."""
        delay = _RETRY
        while True:
            try:
                session = await self._open()
            except StoreError as error:
                log.warning("leader.campaign_retry", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)
                continue
            delay = _RETRY
            try:
                await self._wait_turn(session)
            except _SessionLost:
                log.info("leader.session_lost", reason=session.reason and session.reason.value)
                await session.close(revoke=True)
                continue
            except BaseException:
                await session.close(revoke=True)
                raise
            term = Term(
                fence=Fence(key=session.key, revision=session.create_revision),
                lease=session.lease,
                candidate=self.candidate,
                started=time.time(),
                _session=session,
            )
            session.term = term
            if session.lost.is_set():
                term.end(session.reason or LossReason.RENEWAL_FAILED)
            self.term = term
            return term

    async def resign(self, term: Term) -> None:
        """End `term` on purpose: stop renewing and revoke the lease (immediate handover)."""
        term.end(LossReason.RESIGNED)
        await term._session.close(revoke=True)

    async def abandon(self, term: Term) -> None:
        """After losing `term`: stop renewing; revoke in case the lease still lives."""
        await term._session.close(revoke=True, revoke_within=0.5)

    def store_for(self, term: Term) -> Store:
        """The store leader-only parts write through in `term`: fenced, and counted."""
        fenced = self.store.fenced(term.fence)
        return CountedFencedStore(fenced, valid=term.valid, term=term.revision, counts=self.writes)  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals

    async def _open(self) -> _Session:
        sent = self._clock()
        lease = await self.store.grant_lease(self.ttl)
        key = f"{self.prefix}{lease.id:x}"
        try:
            entry = await self.store.create(key, self.candidate.encode(), lease=lease.id)
        except BaseException:
            with contextlib.suppress(StoreError):
                await self.store.revoke_lease(lease.id)
            raise
        session = _Session(
            self.store,
            lease=lease.id,
            ttl=lease.ttl,
            key=key,
            create_revision=entry.create_revision,
            deadline=sent + lease.ttl,
            margin=self.margin,
            clock=self._clock,
            keeper=self._keeper,
        )
        await session.start()
        log.info("leader.campaigning", member=self.candidate.name, key=key, ttl=lease.ttl)
        return session

    async def _wait_turn(self, session: _Session) -> None:
        """Until no campaign key older than ours is left; `_SessionLost` if ours goes."""
        delay = _RETRY
        while True:
            if session.lost.is_set():
                raise _SessionLost
            try:
                listing = await self.store.list(self.prefix)
                entries = {e.key: e for e in listing.entries}
                if session.key not in entries:
                    session.lose(LossReason.KEY_DELETED)
                    raise _SessionLost
                older = [e for e in listing.entries if e.create_revision < session.create_revision]
                if not older:
                    return
                name = self.candidate.name
                previous = [e for e in older if Candidate.decode(e.value).name == name]
                if previous:
                    await self._retire(previous)
                    continue
                ahead = max(older, key=lambda e: e.create_revision)
                log.info(
                    "leader.waiting",
                    member=self.candidate.name,
                    leader=Candidate.decode(min(older, key=lambda e: e.create_revision).value).name,
                    behind=ahead.key,
                )
                await self._until_deleted(session, ahead.key, since=listing.revision)
                delay = _RETRY
            except _SessionLost:
                raise
            except StoreError as error:
                log.warning("leader.wait_retry", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)

    async def _retire(self, previous: list[Entry]) -> None:
        """Revoke the leases of this member's previous runs' campaign keys."""
        for entry in previous:
            log.warning(
                "leader.previous_run_retired",
                member=self.candidate.name,
                key=entry.key,
                note="a campaign key of this member from a process that is gone",
            )
            with contextlib.suppress(NotFound, ValueError):  # ValueError: not a lease's key
                await self.store.revoke_lease(int(entry.key.removeprefix(self.prefix), 16))

    async def _until_deleted(self, session: _Session, key: str, *, since: int) -> None:
        async def deleted() -> None:
            async for change in self.store.watch(self.prefix, since=since):
                if change.type is EventType.DELETE and change.key == key:
                    return
                if change.type is EventType.DELETE and change.key == session.key:
                    session.lose(LossReason.KEY_DELETED)
                    return

        watching = asyncio.create_task(deleted())
        losing = asyncio.create_task(session.lost.wait())
        try:
            await asyncio.wait({watching, losing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, losing):
                task.cancel()
            await asyncio.gather(watching, losing, return_exceptions=True)
        if session.lost.is_set():
            raise _SessionLost
        if watching.done() and not watching.cancelled() and watching.exception() is not None:
            raise watching.exception()  # type: ignore[misc]

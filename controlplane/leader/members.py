"""Members and leader history: what `pilothouse get controlplanes` and `describe` show.

Keys (all under /pilothouse/, beside the campaign keys of `controlplane.leader.election`):
- `controlplanes/<name>`: each member's `Candidate` record, written at its start with no
  lease, so a member that is down is still listed (NotReady) until someone deletes it;
- `leader/history`: the last `HISTORY` leader changes, newest last, as JSON: when, who (name,
  term), who led before, and why that term ended (Resigned when its leader stopped cleanly
  and said so; otherwise LeaseExpired, noted by the next leader). Written through the term's
  fenced store, so only a current leader adds to it.

A member is *alive* while its campaign key exists (its lease is kept alive); the *leader* is
the alive member with the oldest campaign key.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field

import structlog

from controlplane.leader.election import DEFAULT_PREFIX, Candidate, LossReason, Term
from controlplane.store import AlreadyExists, Conflict, NotFound, Store, StoreError

log = structlog.get_logger(__name__)

MEMBERS_PREFIX = "/pilothouse/controlplanes/"
HISTORY_KEY = "/pilothouse/leader/history"
HISTORY = 20
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class LeaderChange:
    at: float  # wall clock, seconds
    leader: str
    term: int
    previous: str = ""
    previous_term: int = 0
    ended: float = 0.0  # when this term ended (0: it has not, or nobody knows yet)
    reason: str = ""  # why it ended: a LossReason value


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    address: str
    etcd: str
    alive: bool
    leader: bool
    since: int = 0  # the create revision of its campaign key (0: not campaigning)


@dataclass(frozen=True, slots=True)
class Members:
    members: list[Member] = field(default_factory=list)
    history: list[LeaderChange] = field(default_factory=list)

    @property
    def leader(self) -> Member | None:
        return next((m for m in self.members if m.leader), None)


async def announce(store: Store, candidate: Candidate) -> None:
    """Record this member in `controlplanes/<name>` (created or updated)."""
    key = MEMBERS_PREFIX + candidate.name
    value = candidate.encode()
    for _ in range(_ATTEMPTS):
        try:
            current = await store.get(key)
        except NotFound:
            try:
                await store.create(key, value)
                return
            except AlreadyExists:
                continue
        if current.value == value:
            return
        try:
            await store.update(key, value, expected_revision=current.revision)
            return
        except (Conflict, NotFound):
            continue


async def read(store: Store, *, prefix: str = DEFAULT_PREFIX) -> Members:
    """Every known member, who is alive and who leads, and the leader history."""
    campaigns = (await store.list(prefix)).entries
    known = (await store.list(MEMBERS_PREFIX)).entries
    oldest = min(campaigns, key=lambda e: e.create_revision, default=None)
    alive: dict[str, tuple[Candidate, int]] = {}
    for entry in sorted(campaigns, key=lambda e: e.create_revision):
        candidate = Candidate.decode(entry.value)
        alive.setdefault(candidate.name, (candidate, entry.create_revision))
    leader = Candidate.decode(oldest.value).name if oldest is not None else ""
    records = {Candidate.decode(e.value).name: Candidate.decode(e.value) for e in known}
    for name, (candidate, _) in alive.items():
        records.setdefault(name, candidate)
    listed = []
    for name in sorted(records):
        candidate, since = alive.get(name, (records[name], 0))
        listed.append(
            Member(
                name=name,
                address=candidate.address,
                etcd=candidate.etcd,
                alive=name in alive,
                leader=name == leader,
                since=since,
            )
        )
    return Members(members=listed, history=await history(store))


async def history(store: Store) -> list[LeaderChange]:
    try:
        entry = await store.get(HISTORY_KEY)
    except NotFound:
        return []
    return _decode(entry.value)


async def record_change(store: Store, *, term: Term) -> None:
    """Add `term` to the history (through its fenced `store`); the previous term, if it has
    no end yet, ended with its lease. Retries conflicts; gives up quietly when fenced."""
    for attempt in range(_ATTEMPTS):
        try:
            await _record_once(store, term=term)
            return
        except (Conflict, AlreadyExists, NotFound):
            continue
        except StoreError as error:
            log.warning("leader.history_failed", error=str(error), attempt=attempt + 1)
            await asyncio.sleep(0.2 * (attempt + 1))


async def record_end(store: Store, *, term: Term, reason: LossReason) -> None:
    """Mark `term` ended (a clean stop says so itself, before it revokes its lease)."""
    try:
        entry = await store.get(HISTORY_KEY)
    except (NotFound, StoreError):
        return
    changes = _decode(entry.value)
    if not changes or changes[-1].term != term.revision:
        return
    changes[-1] = LeaderChange(
        **{**asdict(changes[-1]), "ended": time.time(), "reason": reason.value}
    )
    try:
        await store.update(HISTORY_KEY, _encode(changes), expected_revision=entry.revision)
    except StoreError as error:
        log.debug("leader.history_end_failed", error=str(error))


async def _record_once(store: Store, *, term: Term) -> None:
    try:
        entry = await store.get(HISTORY_KEY)
        changes, revision = _decode(entry.value), entry.revision
    except NotFound:
        changes, revision = [], 0
    if changes and changes[-1].term == term.revision:
        return
    previous = changes[-1] if changes else None
    now = time.time()
    if previous is not None and not previous.ended:
        changes[-1] = LeaderChange(
            **{**asdict(previous), "ended": now, "reason": LossReason.LEASE_EXPIRED.value}
        )
    changes.append(
        LeaderChange(
            at=now,
            leader=term.candidate.name,
            term=term.revision,
            previous=previous.leader if previous else "",
            previous_term=previous.term if previous else 0,
        )
    )
    value = _encode(changes[-HISTORY:])
    if revision:
        await store.update(HISTORY_KEY, value, expected_revision=revision)
    else:
        await store.create(HISTORY_KEY, value)
    log.info(
        "leader.change_recorded",
        leader=term.candidate.name,
        term=term.revision,
        previous=previous.leader if previous else "",
    )


def _encode(changes: list[LeaderChange]) -> bytes:
    return json.dumps([asdict(c) for c in changes]).encode()


def _decode(value: bytes) -> list[LeaderChange]:
    try:
        return [LeaderChange(**item) for item in json.loads(value)]
    except (ValueError, TypeError):
        return []

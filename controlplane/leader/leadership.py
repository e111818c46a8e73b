"""Leadership: the runnable that runs the leader-only parts for each term of this member.

`Leadership(election, team=build, informers=...)` campaigns; each time this member becomes
leader it calls `build(term, store)` with the term's fenced store and runs what comes back
(every part must declare `needs_leadership`) under `run_all(team, leading=True)`, until the
term is lost; then it cancels them (in reverse order, each finished before the next) and
campaigns again. The parts are built afresh for every term, so nothing a part remembered in
one term (assumed bindings, queued keys, backoffs) leaks into the next; the handlers they
added to the shared informers are removed when their term ends.

Invariants:
- Parts of two terms never run at once on one member: a term's parts are all finished before
  the next campaign starts.
- A part that stops on its own is as fatal as anywhere else (`RunnableExited` ends the process).
- Stopping (cancellation) stops the parts first and then resigns (revokes the lease), so the
  next member takes over at once and never overlaps with this one.
- Each new term is recorded in the leader history (`controlplane.leader.members`), written
  through the term's fenced store, with the previous leader and why it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from controlplane import metrics
from controlplane.leader import members
from controlplane.leader.election import Election, LossReason, Term
from controlplane.store import Store, StoreError
from pilothouse.process.runnable import Runnable, run_all

log = structlog.get_logger(__name__)

Team = Callable[[Term, Store], Sequence[Runnable]]


class Subscribable(Protocol):
    """An informer, as far as handler bookkeeping goes."""

    @property
    def handlers(self) -> tuple[object, ...]: ...

    def remove_handler(self, handler: object) -> None: ...


class Leadership:
    """A Runnable: campaign, lead with a fresh team each term, step down, campaign again."""

    name = "leadership"

    def __init__(
        self,
        election: Election,
        *,
        team: Team,
        informers: Sequence[Subscribable] = (),
        on_term: Callable[[Term | None], None] | None = None,
    ) -> None:
        self.election = election
        self._team = team
        self._informers = tuple(informers)
        self._on_term = on_term
        self.terms = 0
        self.leading = asyncio.Event()

    async def run(self) -> None:
        term: Term | None = None
        try:
            while True:
                term = await self.election.campaign()
                await self._lead(term)
                await self.election.abandon(term)
                term = None
        finally:
            if term is not None and term.valid():
                # Cancelled while leading: the team has stopped (`_lead` waited for it), so
                # handing over now cannot overlap with this member.
                with contextlib.suppress(StoreError, TimeoutError):
                    async with asyncio.timeout(0.5):
                        await members.record_end(
                            self.election.store_for(term), term=term, reason=LossReason.RESIGNED
                        )
                with contextlib.suppress(StoreError):
                    await self.election.resign(term)
                log.info("leader.resigned", member=self.election.candidate.name, term=term.revision)
            elif term is not None:
                await self.election.abandon(term)
            self._set(None)

    async def _lead(self, term: Term) -> None:
        started = time.monotonic()
        self.terms += 1
        store = self.election.store_for(term)
        before = {id(i): set(map(id, i.handlers)) for i in self._informers}
        team = list(self._team(term, store))
        log.info(
            "leader.elected",
            member=self.election.candidate.name,
            term=term.revision,
            parts=[p.name for p in team],
        )
        self._set(term)
        metrics.leading(True)
        runner = asyncio.create_task(run_all(team, leading=True), name="leader.team")
        lost = asyncio.create_task(term.lost.wait(), name="leader.lost")
        recording = asyncio.create_task(members.record_change(store, term=term))
        try:
            await asyncio.wait({runner, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            recording.cancel()
            if not runner.done():
                runner.cancel()
                await asyncio.wait({runner})
            self._set(None)
            metrics.leading(False)
            self._unsubscribe(before)
        if not runner.cancelled() and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]
        if runner.done() and not runner.cancelled() and not term.lost.is_set():
            return  # unreachable: run_all only returns when cancelled
        counts = self.election.writes
        log.warning(
            "leader.stepped_down",
            member=self.election.candidate.name,
            term=term.revision,
            reason=term.reason.value if term.reason else "",
            led_for=round(time.monotonic() - started, 3),
            writes_refused=counts.refused,
            stale_writes=counts.stale,
            stale_writes_committed=counts.stale_committed,
            stale_writes_refused=counts.stale_refused,
            stale_writes_unfinished=counts.stale_unfinished,
        )

    def _set(self, term: Term | None) -> None:
        if term is None:
            self.leading.clear()
        else:
            self.leading.set()
        if self._on_term is not None:
            self._on_term(term)

    def _unsubscribe(self, before: dict[int, set[int]]) -> None:
        for informer in self._informers:
            kept = before.get(id(informer), set())
            for handler in informer.handlers:
                if id(handler) not in kept:
                    informer.remove_handler(handler)

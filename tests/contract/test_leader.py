"""Leader election and leadership, on memory and on etcd alike (the election only needs the
Store's leases, creates, lists and watches).

What users rely on: one leader at a time; a clean stop hands over at once; a leader that
cannot renew steps down before its lease can expire; a leader that was paused past its lease
writes nothing when it wakes (etcd refuses its fenced writes, and it counts them); the
leader-only parts run only during a term and are built afresh for each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import pytest

from controlplane.cache.informer import Informer
from controlplane.leader import Candidate, Election, LossReason, Term
from controlplane.leader import members as leader_members
from controlplane.leader.keeper import LeaseKeeper
from controlplane.leader.leadership import Leadership
from controlplane.objects import ObjectStore
from controlplane.store import Fenced, NotFound, Store
from pilothouse.kinds import Kind
from pilothouse.process.runnable import Runnable, Task
from tests.fixtures.etcd import EtcdServer

PREFIX = "/pilothouse/leader/controlplane/"


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


def election(store: Store, name: str, *, ttl: int = 2, clock=time.monotonic) -> Election:
    return Election(
        store, candidate=Candidate(name=name, address=f"{name}:7070"), ttl=ttl, clock=clock
    )


async def within(seconds: float, awaitable):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(seconds):
        return await awaitable


async def test_the_first_candidate_leads_and_the_next_waits_for_its_resignation(
    store: Store,
) -> None:
    # Leases of 10 s: a handover that waited the lease out could not be quicker than that.
    first, second = election(store, "cp-1", ttl=10), election(store, "cp-2", ttl=10)
    term = await within(10, first.campaign())
    waiting = asyncio.create_task(second.campaign())
    await asyncio.sleep(0.5)
    assert not waiting.done(), "two members lead at once"
    assert term.valid()
    listed = await leader_members.read(store)
    assert [(m.name, m.leader) for m in listed.members] == [("cp-1", True), ("cp-2", False)]

    started = time.monotonic()
    await first.resign(term)
    taken = await within(15, waiting)
    handover = time.monotonic() - started
    assert handover < 10, f"the handover took {handover:.2f} s: the lease was waited out"
    assert term.reason is LossReason.RESIGNED and not term.valid()
    assert taken.revision > term.revision
    await second.resign(taken)


async def test_a_members_new_run_retires_its_previous_runs_term_at_once(store: Store) -> None:
    # cp-1's previous run still renews its 10 s lease (a lease outlives a dead process by up
    # to its TTL; this one would never end): only retiring it lets anyone lead.
    previous = election(store, "cp-1", ttl=10)
    old = await within(10, previous.campaign())
    fenced = previous.store_for(old)
    second = election(store, "cp-2", ttl=10)
    waiting = asyncio.create_task(second.campaign())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    restarted = election(store, "cp-1", ttl=10)
    rejoining = asyncio.create_task(restarted.campaign())
    # The queue moves on at once: cp-2, next in line, leads; cp-1's new run waits behind it.
    taken = await within(15, waiting)
    with pytest.raises(Fenced):
        await fenced.create("/pilothouse/pods/default/stale", b"v1")
    assert not rejoining.done(), "two members lead at once"
    await second.resign(taken)
    new = await within(15, rejoining)
    assert new.revision > taken.revision > old.revision
    listed = await leader_members.read(store)
    assert [m.name for m in listed.members if m.leader] == ["cp-1"]
    await restarted.resign(new)
    await previous.abandon(old)


async def test_fenced_writes_count_and_stop_when_the_term_ends(store: Store) -> None:
    first = election(store, "cp-1")
    term = await within(10, first.campaign())
    fenced = first.store_for(term)
    created = await fenced.create("/pilothouse/pods/default/a", b"v1")
    await first.resign(term)
    before = (await store.list("/")).revision
    with pytest.raises(Fenced):
        await fenced.update("/pilothouse/pods/default/a", b"v2", expected_revision=created.revision)
    assert (await store.list("/")).revision == before, "a refused write used a revision"
    counts = first.writes
    assert (counts.committed, counts.refused, counts.stale, counts.stale_committed) == (1, 1, 1, 0)
    assert counts.stale_refused == 1


class _Stuck:
    """A store whose lease renewals hang (an etcd that stopped answering this member)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.stuck = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def keep_alive(self, lease: int) -> int:
        if self.stuck:
            await asyncio.Event().wait()
        return await self._store.keep_alive(lease)


async def test_a_leader_that_cannot_renew_steps_down_before_its_lease_ends(store: Store) -> None:
    stuck = _Stuck(store)
    # A 10 s lease given up 5 s before it ends (the default: 0.25 s before 2 s): the look at
    # the store after the step-down has seconds to spare however late this loop runs.
    first = Election(
        stuck,  # type: ignore[arg-type]
        candidate=Candidate(name="cp-1", address="cp-1:7070"),
        ttl=10,
        margin=5.0,
    )
    term = await within(10, first.campaign())
    stuck.stuck = True
    stopped = time.monotonic()
    await within(15, term.lost.wait())
    stepped = time.monotonic() - stopped
    # Stepped down while the lease (and so the campaign key) still lived on the store's side.
    assert (await store.get(term.fence.key)).create_revision == term.revision, (
        f"the leader stepped down {stepped:.2f} s after renewals stopped, after its lease ended"
    )
    assert term.reason is LossReason.RENEWAL_FAILED and not term.valid()
    second = election(store, "cp-2")
    taken = await within(30, second.campaign())
    assert taken.revision > term.revision
    await first.abandon(term)
    await second.resign(taken)


async def test_a_paused_leader_wakes_fenced_and_writes_nothing(store: Store) -> None:
    offset = 0.0

    def clock() -> float:
        return time.monotonic() + offset

    first = election(store, "cp-1", clock=clock)
    term = await within(10, first.campaign())
    fenced = first.store_for(term)
    created = await fenced.create("/pilothouse/pods/default/a", b"v1")
    # A SIGSTOP past the lease: the lease ends on the store's side (as etcd expires it), the
    # member's clock jumps, and another member takes over before this one runs again.
    await store.revoke_lease(term.lease)
    offset = 10.0
    second = election(store, "cp-2")
    taken = await within(10, second.campaign())
    assert not term.valid(), "a leader paused past its lease still thinks it leads"
    with pytest.raises(Fenced):
        await fenced.update(
            "/pilothouse/pods/default/a", b"stale", expected_revision=created.revision
        )
    with pytest.raises(Fenced):
        await fenced.create("/pilothouse/pods/default/b", b"stale")
    assert first.writes.stale == 2 and first.writes.stale_committed == 0
    assert (await store.get("/pilothouse/pods/default/a")).value == b"v1"
    with pytest.raises(NotFound):
        await store.get("/pilothouse/pods/default/b")
    await within(5, term.lost.wait())
    await first.abandon(term)
    await second.resign(taken)


# -- the Leadership runnable --------------------------------------------------------------


class _Part:
    """A leader-only part that records when it runs and subscribes to an informer."""

    needs_leadership = True

    def __init__(self, name: str, log: list[str], informer: Informer) -> None:
        self.name = name
        self._log = log
        informer.add_handler(self._seen)

    def _seen(self, notice: object) -> None:
        pass

    async def run(self) -> None:
        self._log.append(f"start {self.name}")
        try:
            await asyncio.Event().wait()
        finally:
            self._log.append(f"stop {self.name}")


async def test_leadership_runs_a_fresh_team_per_term_and_hands_over_on_stop(store: Store) -> None:
    informer = Informer(ObjectStore(store), Kind.NODE)
    watching = asyncio.create_task(informer.run())
    log: list[str] = []
    terms: list[Term] = []

    def team(member: str):  # type: ignore[no-untyped-def]
        def build(term: Term, fenced: Store) -> Sequence[Runnable]:
            terms.append(term)
            return [_Part(f"{member}.scheduler", log, informer)]

        return build

    # Leases of 10 s: a handover that waited the lease out could not be quicker than that.
    one = Leadership(election(store, "cp-1", ttl=10), team=team("cp-1"), informers=[informer])
    two = Leadership(election(store, "cp-2", ttl=10), team=team("cp-2"), informers=[informer])
    running_one = asyncio.create_task(one.run())
    await within(10, one.leading.wait())
    running_two = asyncio.create_task(two.run())
    await asyncio.sleep(0.3)
    assert not two.leading.is_set()
    assert len(informer.handlers) == 1, "the leader's part did not subscribe"

    started = time.monotonic()
    running_one.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running_one
    await within(15, two.leading.wait())
    handover = time.monotonic() - started
    assert handover < 10, f"the handover took {handover:.2f} s: the lease was waited out"
    await asyncio.sleep(0.1)
    assert log[:3] == ["start cp-1.scheduler", "stop cp-1.scheduler", "start cp-2.scheduler"]
    assert len(informer.handlers) == 1, "the old term's handlers were not removed"
    history = await leader_members.history(store)
    assert [(c.leader, c.reason) for c in history] == [("cp-1", "Resigned"), ("cp-2", "")]

    running_two.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running_two
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    assert log[-1] == "stop cp-2.scheduler"
    assert not informer.handlers


async def test_a_part_without_needs_leadership_is_refused_in_a_term(store: Store) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    leadership = Leadership(
        election(store, "cp-1"), team=lambda term, fenced: [Task("misplaced", forever)]
    )
    with pytest.raises(ValueError, match="do not declare needs_leadership"):
        await within(10, leadership.run())


async def test_a_leader_whose_loop_is_busy_keeps_its_term_when_a_keeper_renews(
    etcd_store: Store, shared_etcd_server: EtcdServer
) -> None:
    """The control plane renews its lease on a `LeaseKeeper` thread: seconds of CPU work on
    its event loop (1,000 nodes' heartbeats and controllers) must not cost it the term. The
    same stall without a keeper does, which shows the stall outlasts the lease."""

    def stall(seconds: float) -> None:  # CPU work that never yields to the loop
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(1000))

    alone = election(etcd_store, "cp-0")
    term = await within(10, alone.campaign())
    stall(3.5)
    assert not term.valid(), "a 3.5 s stall did not outlast a 2 s lease renewed on the loop"
    await alone.abandon(term)

    keeper = LeaseKeeper(lambda: shared_etcd_server.store())
    kept = Election(
        etcd_store, candidate=Candidate(name="cp-1", address="cp-1:7070"), ttl=2, keeper=keeper
    )
    try:
        term = await within(10, kept.campaign())
        stall(3.5)
        assert term.valid() and not term.lost.is_set(), term.reason
        await kept.store_for(term).create("/pilothouse/pods/default/kept", b"v1")
        await asyncio.sleep(0)
        assert not term.lost.is_set(), term.reason
        await kept.resign(term)
        assert (await etcd_store.list(PREFIX)).entries == [], "the resigned lease was not revoked"
    finally:
        await keeper.stop()

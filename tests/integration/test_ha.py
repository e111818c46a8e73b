"""Three control-plane members over a three-member etcd (as `up --control-planes 3` runs
them, here on loopback): one leader, a new one within the goal when it is killed, a frozen
leader that wakes deposed writes nothing, and an etcd member lost costs the API nothing.
How fast each of these happens is bench/failover.py's figure, not an assertion here (timing
under a loaded machine is luck); the tests check what happens, waiting generously for it.

How a test knows that a deposed leader wrote nothing: every leader-only write goes through
the term's fenced store, which counts writes that were started after the term could have
ended (`stale`) and how many of them etcd committed (`stale_committed`); etcd refuses each
one in the same transaction (`leader.write_fenced`). The member logs the counts when it steps
down (`leader.stepped_down`), and the test reads them from its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from tests import factories
from tests.integration.ha_support import HaControlPlane
from tests.unit.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def planes(tmp_path: Path) -> AsyncIterator[HaControlPlane]:
    planes = HaControlPlane(tmp_path / "ha")
    try:
        await planes.start()
        yield planes
    finally:
        await planes.stop()


def _log_events(path: Path, event: str) -> list[dict]:  # type: ignore[type-arg]
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


async def steady(planes: HaControlPlane) -> str:
    """The leader, once every member campaigns (each holds its campaign key: the followers
    start campaigning a moment after the first one wins) and etcd's raft leader is another
    member's etcd (the leader moves it off its own: controlplane.leader.placement)."""
    leader, _ = await planes.wait_leader()

    async def apart() -> bool:
        answer = await planes.status()
        lead = next((m for m in answer.members if m.leader), None)
        everyone = sorted(m.name for m in answer.members if m.alive) == planes.names
        return everyone and lead is not None and lead.name == leader and not lead.etcd.leader

    await eventually(
        apart, f"every member alive and etcd's raft leader off the leader {leader}'s etcd", 15
    )
    return leader


async def test_one_leader_and_a_new_one_soon_after_it_is_killed(planes: HaControlPlane) -> None:
    leader = await steady(planes)
    answer = await planes.status()
    assert sorted(m.name for m in answer.members if m.alive) == planes.names
    assert [m.name for m in answer.members if m.leader] == [leader], "not exactly one leader"
    assert all(m.etcd.healthy for m in answer.members), f"etcd not healthy: {answer.members}"
    assert sum(e.leader for e in answer.etcd) == 1, "etcd has no raft leader"

    others = [n for n in planes.names if n != leader]
    os.kill(planes.pid(leader), signal.SIGKILL)
    new, _ = await planes.wait_leader(other_than=leader, via=others)

    # Writes go to etcd through any member: the API answers throughout.
    async with planes.client(*others) as client:
        await client.apply(factories.node(name="after-failover"))
        listed = await client.list(Kind.NODE)
    assert "after-failover" in [n.metadata.name for n in listed.items]
    # The handover from the killed leader to its successor, wherever it stands in the history
    # (on a loaded machine leadership may have moved on since).
    ended = await _ended_term(planes, leader, new, via=others)
    assert ended.reason == "LeaseExpired", f"the killed leader's term: {ended}"


async def _ended_term(
    planes: HaControlPlane, leader: str, new: str, *, via: list[str], term: int = 0
) -> api.LeaderChange:
    """The history's record of `leader`'s term that `new` took over from (the new leader
    writes it after it has begun to lead: wait for it); with `term`, that term's (the same
    two members may have handed over before, while the cluster was starting)."""
    history: list[api.LeaderChange] = []

    def find() -> int | None:
        return next(
            (
                i
                for i, c in enumerate(history)
                if i
                and c.leader == new
                and c.previous == leader
                and (not term or c.previous_term == term)
            ),
            None,
        )

    async def recorded() -> bool:
        history[:] = (await planes.status(*via)).history
        return find() is not None

    with contextlib.suppress(AssertionError):
        await eventually(recorded, f"the history records {leader} -> {new}", interval=0.2)
    handover = find()
    assert handover is not None, f"no handover {leader} -> {new} in {history}"
    ended = history[handover - 1]
    assert ended.leader == leader, f"the term before {new}'s: {ended}"
    return ended


async def test_a_clean_stop_hands_over_at_once(planes: HaControlPlane) -> None:
    leader, _ = await planes.wait_leader()
    others = [n for n in planes.names if n != leader]

    term = 0

    async def term_recorded() -> bool:  # a term stopped before it is recorded has no handover
        nonlocal term
        history = (await planes.status()).history
        if history and history[-1].leader == leader:
            term = history[-1].term
        return term != 0

    await eventually(term_recorded, f"the history records {leader}'s term", interval=0.2)
    stopping = asyncio.create_task(planes.supervisor.stop(leader))
    new, _ = await planes.wait_leader(other_than=leader, via=others)
    await stopping
    # Resigned, not LeaseExpired: the successor did not wait out the stopped leader's lease.
    ended = await _ended_term(planes, leader, new, via=others, term=term)
    assert ended.reason == "Resigned", f"the stopped leader did not resign: {ended}"


async def test_a_leader_frozen_past_its_lease_steps_down_and_writes_nothing(
    planes: HaControlPlane,
) -> None:
    leader = await steady(planes)
    others = [n for n in planes.names if n != leader]
    pid = planes.pid(leader)
    planes.freeze(pid)
    new, _ = await planes.wait_leader(other_than=leader, via=others)
    # Something for the frozen leader's parts to act on when they wake: a node they would
    # judge and a deployment their controllers would create a ReplicaSet for.
    async with planes.client(*others) as client:
        await client.apply(factories.node(name="while-frozen"))
        await client.apply(factories.deployment(name="while-frozen", replicas=2))
    planes.thaw(pid)
    log = planes.log(leader)

    async def stepped_down() -> bool:
        return bool(_log_events(log, "leader.stepped_down"))

    await eventually(stepped_down, f"the thawed leader logs leader.stepped_down ({log})", 10)
    events = _log_events(log, "leader.stepped_down")
    event = events[-1]
    assert event["reason"] in ("RenewalFailed", "LeaseExpired"), event
    assert event["stale_writes_committed"] == 0, f"a deposed leader's write committed: {event}"
    # Every write it started after its term could have ended was refused by etcd or never
    # reached it (cancelled with its part).
    assert event["stale_writes"] == (
        event["stale_writes_refused"] + event["stale_writes_unfinished"]
    ), event
    assert len(_log_events(log, "leader.write_fenced")) >= event["stale_writes_refused"]
    assert await planes.leader(*others) == new, "the thawed member took leadership back"

    async def campaigning_again() -> bool:  # a follower now
        answer = await planes.status()
        return {m.name for m in answer.members if m.alive} == set(planes.names)

    await eventually(campaigning_again, "the thawed member campaigns again", 10)


async def test_losing_one_etcd_member_keeps_the_api_and_every_write_lands(
    planes: HaControlPlane,
) -> None:
    await planes.wait_leader()
    # The etcd raft leader is the worst one to lose (an election on top of the failover).
    answer = await planes.status()
    victim = next(m.name for m in answer.members if m.etcd.leader)
    async with planes.client(timeout=5.0) as client:
        await client.apply(factories.node(name="before"))
        os.kill(planes.etcd_pid(victim), signal.SIGKILL)
        for i in range(20):  # each write retried for up to 10 s, as a client would
            started = time.monotonic()
            while True:
                try:
                    await client.apply(factories.node(name=f"n{i}"))
                    break
                except Exception:
                    if time.monotonic() - started > 10:
                        raise
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
        listed = await client.list(Kind.NODE)
    assert {f"n{i}" for i in range(20)} <= {n.metadata.name for n in listed.items}

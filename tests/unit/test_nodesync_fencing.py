"""Fencing on every return (issue 12): a node heard from again after it was lost (a frozen
agent, a healed link: no re-registration) counts as Ready only once a *fenced* push of its
current desired set has succeeded, and that push is made at once, not after the session's
back-off or the periodic resync (node sync over the in-memory store and fake agents)."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.nodes import conditions, syncer
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from pilothouse.kinds import Kind
from tests.unit.nodesync_support import FakeAgent, Plane, agents, eventually, make_pod

BACK_OFF = 300.0  # s: a failed session's back-off in the back-off test


async def _ready(plane: Plane) -> object:
    node = await plane.node("n1")
    condition = conditions.ready_condition(node)
    return conditions.is_ready(node) or (condition and (condition.status, condition.reason))


async def _lose(plane: Plane, agent: FakeAgent) -> None:
    """The agent freezes, and the node-lifecycle controller marks the node Unknown."""
    agent.hang = True
    node = await plane.node("n1")
    conditions.set_ready(
        node,
        status=ReadyStatus.UNKNOWN,
        reason=ReadyReason.STATUS_UNKNOWN,
        message="Agent stopped posting node status.",
        now=time.time(),
    )
    await plane.objects.update_status(node)


async def test_returning_node_is_ready_only_after_a_fenced_push_of_its_current_set() -> None:
    async with agents(1) as (agent,), Plane() as plane:
        await plane.objects.create(make_pod("stale", "n1"))
        await plane.objects.create(make_pod("kept", "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: _ready(plane), "node n1 never became Ready")
        await _lose(plane, agent)
        await plane.objects.delete(Kind.POD, "default", "stale")  # evicted, replaced elsewhere
        # The push of the deletion hangs until its deadline: the frozen agent missed it.
        await eventually(lambda: agent.abandoned >= 1, "the hanging push was never given up")

        before, arrived = len(agent.pushes), agent.received
        agent.fence_gate = asyncio.Event()  # the agent stops the stale pod: it takes a moment
        agent.hang = False
        await plane.registry.heartbeat("n1", instance_id="i-1")  # heard from again
        await eventually(lambda: agent.received > arrived, "no push after the return")
        node = await plane.node("n1")
        assert not conditions.is_ready(node), (
            "the node counted as Ready before its fenced push had succeeded"
        )
        agent.fence_gate.set()
        await eventually(lambda: _ready(plane), "the returned node never became Ready again")
        after = zip(agent.pushes[before:], agent.fences[before:], strict=True)
        fenced = [pods for pods, fence in after if fence]
        assert fenced and fenced[0] == ["default/kept"], (
            f"the returning node was not fenced with its current set: {agent.pushes}"
        )


async def test_a_returning_node_is_pushed_to_at_once_not_after_the_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every failed session backs off BACK_OFF seconds: a return that waited it out would not
    # be Ready within the test's wait, whatever the machine's load; cut short, it is Ready
    # after at most one call's deadline (1 s) and a FENCE_BACKOFF (1 s).
    monkeypatch.setattr(syncer, "INITIAL_BACKOFF", BACK_OFF)
    async with agents(1) as (agent,), Plane(max_backoff=BACK_OFF) as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: _ready(plane), "node n1 never became Ready")
        await _lose(plane, agent)
        await plane.objects.delete(Kind.POD, "default", "web-1")
        # The push of the deletion hangs until its deadline: the session failed, it backs off.
        await eventually(lambda: agent.abandoned >= 1, "the hanging push was never given up")
        pushes = len(agent.pushes)
        agent.hang = False
        await plane.registry.heartbeat("n1", instance_id="i-1")
        await eventually(
            lambda: _ready(plane), "the returned node waited out its back-off", within=BACK_OFF / 5
        )
        assert agent.fences[pushes:][0], "the first push after the return was not fenced"

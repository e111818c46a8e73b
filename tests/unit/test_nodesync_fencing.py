"""Fencing on every return (issue 12): a node heard from again after it was lost (a frozen
agent, a healed link: no re-registration) counts as Ready only once a *fenced* push of its
current desired set has succeeded, and that push is made at once, not after the session's
back-off or the periodic resync (node sync over the in-memory store and fake agents)."""

from __future__ import annotations

import asyncio
import time

from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from pilothouse.kinds import Kind
from tests.unit.nodesync_support import FakeAgent, Plane, agents, eventually, make_pod


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
        await asyncio.sleep(1.5)  # pushes to the frozen agent time out meanwhile

        before = len(agent.pushes)
        agent.fence_gate = asyncio.Event()  # the agent stops the stale pod: it takes a moment
        agent.hang = False
        await plane.registry.heartbeat("n1", instance_id="i-1")  # heard from again
        await eventually(lambda: agent.received > len(agent.pushes), "no push after the return")
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


async def test_a_returning_node_is_pushed_to_at_once_not_after_the_back_off() -> None:
    async with agents(1) as (agent,), Plane(max_backoff=5.0) as plane:
        await plane.objects.create(make_pod("web-1", "n1"))
        await plane.register("n1", agent)
        await eventually(lambda: _ready(plane), "node n1 never became Ready")
        await _lose(plane, agent)
        await plane.objects.delete(Kind.POD, "default", "web-1")
        await asyncio.sleep(4.0)  # failed sessions: the back-off has grown to seconds
        pushes = len(agent.pushes)
        agent.hang = False
        back = time.monotonic()
        await plane.registry.heartbeat("n1", instance_id="i-1")
        await eventually(lambda: _ready(plane), "the returned node never became Ready again")
        took = time.monotonic() - back
        assert agent.fences[pushes:][0], "the first push after the return was not fenced"
        # At most one call still hanging (1 s deadline) and a FENCE_BACKOFF (1 s) retry; the
        # session's own back-off (up to 5 s) is not waited out.
        assert took < 3.5, f"the returned node was fenced {took:.1f} s after its heartbeat"

"""The end of a node's fencing: Ready=True once a fenced push to its agent has succeeded.

Invariant: Ready goes to True only if the node is still in the Fencing episode the push
answered (same agent instance, same transition time of the condition): a node lost again, or
re-registered by another agent meanwhile, is left as it is. Compare-and-swap write, retried on
a conflict.
"""

from __future__ import annotations

import structlog

from controlplane.events import EventRecorder, EventType
from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import Clock
from controlplane.store import Conflict, NotFound
from pilothouse.kinds import Kind

log = structlog.get_logger("controlplane.nodes.syncer")

READY_MESSAGE = "agent is posting ready status; its pods are in sync"
_ATTEMPTS = 5


async def mark_ready(
    objects: ObjectStore,
    name: str,
    *,
    instance: str,
    episode: float | None,
    events: EventRecorder | None,
    clock: Clock,
) -> None:
    """Ready=True for node `name`, if it is still in the Fencing episode the push answered."""
    for _ in range(_ATTEMPTS):
        try:
            node = await objects.get(Kind.NODE, "", name)
        except NotFound:
            return
        if (
            conditions.instance_of(node) != instance
            or not conditions.is_fencing(node)
            or conditions.transition_time(node) != episode
        ):
            return
        conditions.set_ready(
            node,
            status=ReadyStatus.TRUE,
            reason=ReadyReason.AGENT_READY,
            message=READY_MESSAGE,
            now=clock.now(),
        )
        try:
            node = await objects.update_status(node)
        except Conflict:
            continue
        log.info("node.ready", node=name, instance=instance)
        if events is not None:
            message = f"Node {name} status is now: NodeReady"
            await events.record(node, EventType.NORMAL, "NodeReady", message)
        return

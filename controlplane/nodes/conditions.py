"""The Node's Ready condition and identity fields, read and written in one place.

Invariants:
- A Node has at most one condition of each type. `lastTransitionTime` moves only when the
  condition's status changes (`pilothouse.conditions`, the rule every object's conditions
  follow); `lastHeartbeatTime` only when a heartbeat is recorded.
- Ready is "True" (reason AgentReady), "False" (reason Fencing: the agent is back but its first
  push has not succeeded yet) or "Unknown" (reason NodeStatusUnknown: heartbeats stopped).
  Only the node syncer sets True, only the registry sets Fencing, only the node-lifecycle
  controller sets Unknown.
"""

from __future__ import annotations

import enum

from pilothouse.conditions import find_condition, seconds, set_condition, stamp
from pilothouse.v1 import objects_pb2

READY = "Ready"
INSTANCE_ANNOTATION = "pilothouse.io/agent-instance"
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"


class ReadyReason(enum.Enum):
    AGENT_READY = "AgentReady"
    FENCING = "Fencing"
    STATUS_UNKNOWN = "NodeStatusUnknown"


class ReadyStatus(enum.Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


def ready_condition(node: objects_pb2.Node) -> objects_pb2.Condition | None:
    return find_condition(node.status.conditions, READY)


def ready_status(node: objects_pb2.Node) -> ReadyStatus | None:
    condition = ready_condition(node)
    if condition is None:
        return None
    try:
        return ReadyStatus(condition.status)
    except ValueError:
        return None


def is_ready(node: objects_pb2.Node) -> bool:
    return ready_status(node) is ReadyStatus.TRUE


def is_fencing(node: objects_pb2.Node) -> bool:
    condition = ready_condition(node)
    return (
        condition is not None
        and condition.status == ReadyStatus.FALSE.value
        and condition.reason == ReadyReason.FENCING.value
    )


def is_lost(node: objects_pb2.Node) -> bool:
    """Marked NotReady by the node-lifecycle controller (heartbeats stopped)."""
    return ready_status(node) is ReadyStatus.UNKNOWN


def set_ready(
    node: objects_pb2.Node,
    *,
    status: ReadyStatus,
    reason: ReadyReason,
    message: str,
    now: float,
    heartbeat: bool = False,
) -> None:
    """Set the Ready condition in place (see the module's timestamp rules)."""
    wanted = objects_pb2.Condition(
        type=READY, status=status.value, reason=reason.value, message=message
    )
    conditions = set_condition(node.status.conditions, wanted, now=now, update_time=False)
    del node.status.conditions[:]
    node.status.conditions.extend(conditions)
    if heartbeat:
        touch_heartbeat(node, now=now)


def touch_heartbeat(node: objects_pb2.Node, *, now: float) -> None:
    """Record a heartbeat on the Ready condition, changing nothing else."""
    condition = ready_condition(node)
    if condition is not None:
        stamp(condition.last_heartbeat_time, now)


def heartbeat_time(node: objects_pb2.Node) -> float | None:
    """The last heartbeat written to the store (seconds since the epoch), if any."""
    condition = ready_condition(node)
    if condition is None or not condition.HasField("last_heartbeat_time"):
        return None
    return seconds(condition.last_heartbeat_time)


def transition_time(node: objects_pb2.Node) -> float | None:
    condition = ready_condition(node)
    if condition is None or not condition.HasField("last_transition_time"):
        return None
    return seconds(condition.last_transition_time)


def instance_of(node: objects_pb2.Node) -> str:
    return node.metadata.annotations.get(INSTANCE_ANNOTATION, "")


def endpoint(node: objects_pb2.Node) -> str | None:
    """ "HOST:PORT" of the node's agent, or None while the node has not said where it is."""
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    host = next(
        (a.address for a in node.status.addresses if a.type == "InternalIP" and a.address), ""
    )
    if not host or port <= 0:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"{host}:{port}"

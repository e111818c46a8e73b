"""What an agent reports about its node, and how the registry copies it onto the stored Node.

Invariants: the agent's identity labels (hostname, OS, architecture) and its own labels are
set, its instance annotation names the agent; capacity, allocatable, nodeInfo, endpoints and
addresses are the agent's; of the conditions only the pressure ones (`AGENT_CONDITIONS`) come
from the agent, and only when their status or reason changed: Ready stays the control
plane's (a registration sets it to False/Fencing, see `controlplane.nodes.registry`).
"""

from __future__ import annotations

from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyReason, ReadyStatus
from pilothouse.v1 import objects_pb2

FENCING_MESSAGE = "agent registered; stopping pods no longer bound to it before it counts as Ready"
RETURNED_MESSAGE = (
    "agent is posting heartbeats again; stopping pods no longer bound to it before it "
    "counts as Ready"
)


# Conditions a node reports about itself, as the kubelet does; Ready stays the control plane's.
AGENT_CONDITIONS = frozenset({"DiskPressure", "MemoryPressure", "PIDPressure"})


def news(current: objects_pb2.Node, reported: objects_pb2.NodeStatus | None) -> bool:
    """Whether a heartbeat's status changes what is stored (capacity, allocatable, pressure)."""
    if reported is None:
        return False
    for field in ("capacity", "allocatable"):
        values = getattr(reported, field)
        if values and dict(values) != dict(getattr(current.status, field)):
            return True
    held = {c.type: (c.status, c.reason) for c in current.status.conditions}
    return any(
        held.get(c.type) != (c.status, c.reason)
        for c in reported.conditions
        if c.type in AGENT_CONDITIONS
    )


def take(target: objects_pb2.Node, reported: objects_pb2.NodeStatus) -> None:
    """A heartbeat's status onto `target`: capacity and allocatable when reported and
    different, and the pressure conditions (`take_conditions`)."""
    for field in ("capacity", "allocatable"):
        values = getattr(reported, field)
        if values and dict(values) != dict(getattr(target.status, field)):
            held = getattr(target.status, field)
            held.clear()
            held.update(values)
    take_conditions(target, reported)


def take_conditions(target: objects_pb2.Node, reported: objects_pb2.NodeStatus) -> None:
    """Take the agent's pressure conditions when their status or reason changed (a new
    heartbeat time alone is not worth a write)."""
    for condition in reported.conditions:
        if condition.type not in AGENT_CONDITIONS:
            continue
        current = next((c for c in target.status.conditions if c.type == condition.type), None)
        if current is None:
            target.status.conditions.append(condition)
        elif (current.status, current.reason) != (condition.status, condition.reason):
            current.CopyFrom(condition)


def set_identity(target: objects_pb2.Node, reported: objects_pb2.Node, instance_id: str) -> None:
    labels = target.metadata.labels
    info = reported.status.node_info
    labels[conditions.HOSTNAME_LABEL] = reported.metadata.name
    if info.operating_system:
        labels[conditions.OS_LABEL] = info.operating_system
    if info.architecture:
        labels[conditions.ARCH_LABEL] = info.architecture
    labels.update(reported.metadata.labels)
    target.metadata.annotations[conditions.INSTANCE_ANNOTATION] = instance_id


def set_status(target: objects_pb2.Node, reported: objects_pb2.Node, *, now: float) -> None:
    """Everything the agent says about itself, and Ready=False/Fencing with a fresh heartbeat."""
    status = target.status
    source = reported.status
    for field in ("capacity", "allocatable"):
        values = getattr(status, field)
        values.clear()
        values.update(getattr(source, field))
    status.node_info.CopyFrom(source.node_info)
    status.daemon_endpoints.CopyFrom(source.daemon_endpoints)
    del status.addresses[:]
    status.addresses.extend(source.addresses)
    if not any(a.type == "Hostname" for a in status.addresses):
        status.addresses.add(type="Hostname", address=reported.metadata.name)
    conditions.set_ready(
        target,
        status=ReadyStatus.FALSE,
        reason=ReadyReason.FENCING,
        message=FENCING_MESSAGE,
        now=now,
        heartbeat=True,
    )

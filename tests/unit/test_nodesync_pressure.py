"""An agent's DiskPressure reaches its Node (issue 11): what `describe node` and the scheduler
see after a heartbeat that reports it, and that Ready stays the control plane's."""

from __future__ import annotations

from controlplane.nodes import conditions
from controlplane.nodes.registry import NodeRegistry
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories


def _status(pressure: str) -> objects_pb2.NodeStatus:
    status = objects_pb2.NodeStatus()
    status.conditions.add(type="DiskPressure", status=pressure, reason=f"R{pressure}")
    status.conditions.add(type="Ready", status="True", reason="AgentSaysSo")
    return status


async def test_a_heartbeat_reporting_disk_pressure_sets_it_on_the_node() -> None:
    clock = ManualClock()
    objects = ObjectStore(MemoryStore(), clock=clock.now)
    registry = NodeRegistry(objects, clock=clock)
    await registry.register(factories.node_report(), instance_id="agent-a")
    await registry.heartbeat("n1", instance_id="agent-a", status=_status("True"))
    node = await objects.get(Kind.NODE, "", "n1")
    found = {c.type: (c.status, c.reason) for c in node.status.conditions}
    assert found["DiskPressure"] == ("True", "RTrue")
    ready = conditions.ready_condition(node)
    assert ready is not None and ready.reason != "AgentSaysSo", "an agent set its own Ready"
    await registry.heartbeat("n1", instance_id="agent-a", status=_status("False"))
    node = await objects.get(Kind.NODE, "", "n1")
    assert {c.type: c.status for c in node.status.conditions}["DiskPressure"] == "False"

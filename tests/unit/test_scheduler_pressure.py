"""A node reporting DiskPressure takes no new pods (issue 11), as Kubernetes' disk-pressure
taint keeps them off: the pod goes to another node, or stays Pending saying why."""

from __future__ import annotations

import functools

from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.scheduler.snapshot import Snapshot
from pilothouse.v1 import objects_pb2
from tests import factories

node = functools.partial(factories.node, cpu="4", memory="8Gi")


def _pressured(name: str) -> objects_pb2.Node:
    n = node(name=name)
    n.status.conditions.add(type="DiskPressure", status="True", reason="KubeletHasDiskPressure")
    return n


def test_a_node_with_disk_pressure_gets_no_new_pods() -> None:
    decision = schedule(Snapshot.build([_pressured("n1"), node(name="n2")], []), factories.pod())
    assert decision == Placement(node="n2", score=decision.score)
    alone = schedule(Snapshot.build([_pressured("n1")], []), factories.pod())
    assert isinstance(alone, Unschedulable)
    assert alone.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/disk-pressure: }."
    )

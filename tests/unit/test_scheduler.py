"""The scheduler's decision over snapshots: where a user's pods land, and why some cannot."""

from __future__ import annotations

import functools
from collections import Counter

from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.scheduler.snapshot import Snapshot
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.factories import container, pod

# The machines these tests place pods on: 4 cpu and 8Gi unless a test says otherwise.
node = functools.partial(factories.node, cpu="4", memory="8Gi")


def place_all(snapshot: Snapshot, pods: list[objects_pb2.Pod]) -> dict[str, str]:
    """Schedule pods one by one, each assumed before the next, as the scheduler does."""
    where = {}
    for p in pods:
        decision = schedule(snapshot, p)
        assert isinstance(decision, Placement), f"pod {p.metadata.name} stayed Pending: {decision}"
        where[p.metadata.name] = decision.node
        snapshot = snapshot.assume(p, decision.node)
    return where


def test_six_replicas_spread_two_per_node_over_three_equal_nodes() -> None:
    snapshot = Snapshot.build([node(name="n1"), node(name="n2"), node(name="n3")], [])
    replicas = [pod(name=f"web-{i}", owner="rs-web") for i in range(6)]
    counts = Counter(place_all(snapshot, replicas).values())
    assert counts == {"n1": 2, "n2": 2, "n3": 2}, f"6 replicas on 3 nodes landed as {counts}"


def test_spread_beats_a_slightly_emptier_node() -> None:
    other = [
        pod(name=f"other-{i}", node="n1", containers=[container(cpu="100m")]) for i in range(2)
    ]
    snapshot = Snapshot.build([node(name="n1"), node(name="n2")], other)
    replicas = [
        pod(name=f"web-{i}", owner="rs-web", containers=[container(cpu="100m")]) for i in range(4)
    ]
    counts = Counter(place_all(snapshot, replicas).values())
    assert counts == {"n1": 2, "n2": 2}, f"replicas should spread evenly, got {counts}"


def test_least_allocated_prefers_the_emptier_node() -> None:
    busy = pod(name="busy", node="n1", containers=[container(cpu="3", memory="6Gi")])
    snapshot = Snapshot.build([node(name="n1"), node(name="n2")], [busy])
    decision = schedule(snapshot, pod(name="new", containers=[container(cpu="500m", memory="1Gi")]))
    assert decision == Placement(node="n2", score=decision.score)


def test_equal_nodes_tie_break_by_name() -> None:
    snapshot = Snapshot.build([node(name="n3"), node(name="n1"), node(name="n2")], [])
    decision = schedule(snapshot, pod(name="solo"))
    assert isinstance(decision, Placement) and decision.node == "n1"


def test_resources_fit_by_requests_and_assumed_pods_count() -> None:
    snapshot = Snapshot.build([node(name="n1", cpu="1", memory="1Gi")], [])
    first = pod(name="a", containers=[container(cpu="600m", memory="256Mi")])
    decision = schedule(snapshot, first)
    assert isinstance(decision, Placement)
    snapshot = snapshot.assume(first, decision.node)
    second = schedule(snapshot, pod(name="b", containers=[container(cpu="600m", memory="256Mi")]))
    assert isinstance(second, Unschedulable), "a node with 1 cpu took two pods asking 600m each"
    assert second.message == "0/1 nodes are available: 1 Insufficient cpu."


def test_limits_count_as_requests_when_no_request_is_given() -> None:
    p = pod(name="limited")
    p.spec.containers[0].resources.limits["memory"] = "2Gi"
    decision = schedule(Snapshot.build([node(name="n1", memory="1Gi")], []), p)
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Insufficient memory."


def test_pod_count_limit() -> None:
    existing = [pod(name=f"p{i}", node="n1") for i in range(2)]
    snapshot = Snapshot.build([node(name="n1", pods="2")], existing)
    decision = schedule(snapshot, pod(name="third"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Too many pods."


def test_finished_pods_hold_no_resources() -> None:
    done = pod(name="done", node="n1", containers=[container(cpu="4")])
    done.status.phase = "Succeeded"
    decision = schedule(
        Snapshot.build([node(name="n1")], [done]), pod(name="new", containers=[container(cpu="1")])
    )
    assert isinstance(decision, Placement), "a Succeeded pod still blocked its node's cpu"


def test_node_selector() -> None:
    snapshot = Snapshot.build(
        [node(name="n1", labels={"disk": "hdd"}), node(name="n2", labels={"disk": "ssd"})], []
    )
    decision = schedule(snapshot, pod(name="db", node_selector={"disk": "ssd"}))
    assert isinstance(decision, Placement) and decision.node == "n2"
    decision = schedule(snapshot, pod(name="gpu", node_selector={"gpu": "yes"}))
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_cordoned_node_gets_no_pods() -> None:
    snapshot = Snapshot.build([node(name="n1", unschedulable=True), node(name="n2")], [])
    assert Counter(place_all(snapshot, [pod(name=f"p{i}") for i in range(3)]).values()) == {"n2": 3}
    decision = schedule(Snapshot.build([node(name="n1", unschedulable=True)], []), pod(name="p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 node(s) were unschedulable."


def test_not_ready_node_gets_no_pods() -> None:
    snapshot = Snapshot.build([node(name="n1", ready="False"), node(name="n2", ready="False")], [])
    decision = schedule(snapshot, pod(name="p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/2 nodes are available: 2 node(s) were not ready."


def test_host_port_conflict() -> None:
    snapshot = Snapshot.build([node(name="n1"), node(name="n2")], [])
    where = place_all(
        snapshot,
        [
            pod(name="a", containers=[container(host_port=8080, container_port=80)]),
            pod(name="b", containers=[container(host_port=8080, container_port=80)]),
        ],
    )
    assert sorted(where.values()) == ["n1", "n2"], f"two pods share host port 8080: {where}"
    taken = [
        pod(name="a", node="n1", containers=[container(host_port=8080, container_port=80)]),
        pod(name="b", node="n2", containers=[container(host_port=8080, container_port=80)]),
    ]
    decision = schedule(
        Snapshot.build([node(name="n1"), node(name="n2")], taken),
        pod(name="c", containers=[container(host_port=8080, container_port=80)]),
    )
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    )
    different_port = schedule(
        Snapshot.build([node(name="n1")], taken[:1]),
        pod(name="d", containers=[container(host_port=9090, container_port=80)]),
    )
    assert isinstance(different_port, Placement)


def test_untolerated_taint() -> None:
    tainted = node(name="n1")
    tainted.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    decision = schedule(Snapshot.build([tainted], []), pod(name="p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
    )


def test_message_counts_every_reason_sorted_as_kubernetes_sorts_them() -> None:
    nodes = [
        node(name="small-1", memory="512Mi", labels={"zone": "a"}),
        node(name="small-2", memory="512Mi", labels={"zone": "a"}),
        node(name="other", memory="64Gi", labels={"zone": "b"}),
    ]
    decision = schedule(
        Snapshot.build(nodes, []),
        pod(name="big", node_selector={"zone": "a"}, containers=[container(memory="1Gi")]),
    )
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 Insufficient memory."
    )
    assert "small-1" in decision.rejections["small-1"].message


def test_a_node_short_of_cpu_and_memory_counts_both() -> None:
    decision = schedule(
        Snapshot.build([node(name="n1", cpu="1", memory="1Gi")], []),
        pod(name="p", containers=[container(cpu="2", memory="2Gi")]),
    )
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."


def test_no_nodes_at_all() -> None:
    decision = schedule(Snapshot.build([], []), pod(name="p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "no nodes available to schedule pods"

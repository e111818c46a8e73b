"""The scheduler's decision over snapshots: where a user's pods land, and why some cannot."""

from __future__ import annotations

from collections import Counter

from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.scheduler.snapshot import Snapshot
from pilothouse.v1 import objects_pb2


def node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    ready: bool = True,
    labels: dict[str, str] | None = None,
    cordoned: bool = False,
) -> objects_pb2.Node:
    n = objects_pb2.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    n.spec.unschedulable = cordoned
    n.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": pods})
    n.status.capacity.update({"cpu": cpu, "memory": memory, "pods": pods})
    n.status.conditions.add(type="Ready", status="True" if ready else "False")
    return n


def pod(
    name: str,
    *,
    cpu: str | None = None,
    memory: str | None = None,
    owner: str = "",
    host_port: int = 0,
    node_selector: dict[str, str] | None = None,
    node_name: str = "",
) -> objects_pb2.Pod:
    p = objects_pb2.Pod()
    p.metadata.name = name
    p.metadata.namespace = "default"
    if owner:
        p.metadata.owner_references.add(kind="ReplicaSet", name=owner, uid=owner, controller=True)
    container = p.spec.containers.add(name="main", image="busybox")
    if cpu:
        container.resources.requests["cpu"] = cpu
    if memory:
        container.resources.requests["memory"] = memory
    if host_port:
        container.ports.add(container_port=80, host_port=host_port)
    p.spec.node_selector.update(node_selector or {})
    p.spec.node_name = node_name
    return p


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
    snapshot = Snapshot.build([node("n1"), node("n2"), node("n3")], [])
    replicas = [pod(f"web-{i}", owner="rs-web") for i in range(6)]
    counts = Counter(place_all(snapshot, replicas).values())
    assert counts == {"n1": 2, "n2": 2, "n3": 2}, f"6 replicas on 3 nodes landed as {counts}"


def test_spread_beats_a_slightly_emptier_node() -> None:
    other = [pod(f"other-{i}", cpu="100m", node_name="n1") for i in range(2)]
    snapshot = Snapshot.build([node("n1"), node("n2")], other)
    replicas = [pod(f"web-{i}", cpu="100m", owner="rs-web") for i in range(4)]
    counts = Counter(place_all(snapshot, replicas).values())
    assert counts == {"n1": 2, "n2": 2}, f"replicas should spread evenly, got {counts}"


def test_least_allocated_prefers_the_emptier_node() -> None:
    busy = pod("busy", cpu="3", memory="6Gi", node_name="n1")
    snapshot = Snapshot.build([node("n1"), node("n2")], [busy])
    decision = schedule(snapshot, pod("new", cpu="500m", memory="1Gi"))
    assert decision == Placement(node="n2", score=decision.score)


def test_equal_nodes_tie_break_by_name() -> None:
    snapshot = Snapshot.build([node("n3"), node("n1"), node("n2")], [])
    decision = schedule(snapshot, pod("solo"))
    assert isinstance(decision, Placement) and decision.node == "n1"


def test_resources_fit_by_requests_and_assumed_pods_count() -> None:
    snapshot = Snapshot.build([node("n1", cpu="1", memory="1Gi")], [])
    first = pod("a", cpu="600m", memory="256Mi")
    decision = schedule(snapshot, first)
    assert isinstance(decision, Placement)
    snapshot = snapshot.assume(first, decision.node)
    second = schedule(snapshot, pod("b", cpu="600m", memory="256Mi"))
    assert isinstance(second, Unschedulable), "a node with 1 cpu took two pods asking 600m each"
    assert second.message == "0/1 nodes are available: 1 Insufficient cpu."


def test_limits_count_as_requests_when_no_request_is_given() -> None:
    p = pod("limited")
    p.spec.containers[0].resources.limits["memory"] = "2Gi"
    decision = schedule(Snapshot.build([node("n1", memory="1Gi")], []), p)
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Insufficient memory."


def test_pod_count_limit() -> None:
    existing = [pod(f"p{i}", node_name="n1") for i in range(2)]
    snapshot = Snapshot.build([node("n1", pods="2")], existing)
    decision = schedule(snapshot, pod("third"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Too many pods."


def test_finished_pods_hold_no_resources() -> None:
    done = pod("done", cpu="4", node_name="n1")
    done.status.phase = "Succeeded"
    decision = schedule(Snapshot.build([node("n1")], [done]), pod("new", cpu="1"))
    assert isinstance(decision, Placement), "a Succeeded pod still blocked its node's cpu"


def test_node_selector() -> None:
    snapshot = Snapshot.build(
        [node("n1", labels={"disk": "hdd"}), node("n2", labels={"disk": "ssd"})], []
    )
    decision = schedule(snapshot, pod("db", node_selector={"disk": "ssd"}))
    assert isinstance(decision, Placement) and decision.node == "n2"
    decision = schedule(snapshot, pod("gpu", node_selector={"gpu": "yes"}))
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_cordoned_node_gets_no_pods() -> None:
    snapshot = Snapshot.build([node("n1", cordoned=True), node("n2")], [])
    assert Counter(place_all(snapshot, [pod(f"p{i}") for i in range(3)]).values()) == {"n2": 3}
    decision = schedule(Snapshot.build([node("n1", cordoned=True)], []), pod("p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 node(s) were unschedulable."


def test_not_ready_node_gets_no_pods() -> None:
    snapshot = Snapshot.build([node("n1", ready=False), node("n2", ready=False)], [])
    decision = schedule(snapshot, pod("p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/2 nodes are available: 2 node(s) were not ready."


def test_host_port_conflict() -> None:
    snapshot = Snapshot.build([node("n1"), node("n2")], [])
    where = place_all(snapshot, [pod("a", host_port=8080), pod("b", host_port=8080)])
    assert sorted(where.values()) == ["n1", "n2"], f"two pods share host port 8080: {where}"
    taken = [pod("a", host_port=8080, node_name="n1"), pod("b", host_port=8080, node_name="n2")]
    decision = schedule(Snapshot.build([node("n1"), node("n2")], taken), pod("c", host_port=8080))
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    )
    different_port = schedule(Snapshot.build([node("n1")], taken[:1]), pod("d", host_port=9090))
    assert isinstance(different_port, Placement)


def test_untolerated_taint() -> None:
    tainted = node("n1")
    tainted.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    decision = schedule(Snapshot.build([tainted], []), pod("p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
    )


def test_message_counts_every_reason_sorted_as_kubernetes_sorts_them() -> None:
    nodes = [
        node("small-1", memory="512Mi", labels={"zone": "a"}),
        node("small-2", memory="512Mi", labels={"zone": "a"}),
        node("other", memory="64Gi", labels={"zone": "b"}),
    ]
    decision = schedule(
        Snapshot.build(nodes, []), pod("big", memory="1Gi", node_selector={"zone": "a"})
    )
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 Insufficient memory."
    )
    assert "small-1" in decision.rejections["small-1"].message


def test_a_node_short_of_cpu_and_memory_counts_both() -> None:
    decision = schedule(
        Snapshot.build([node("n1", cpu="1", memory="1Gi")], []),
        pod("p", cpu="2", memory="2Gi"),
    )
    assert isinstance(decision, Unschedulable)
    assert decision.message == "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."


def test_no_nodes_at_all() -> None:
    decision = schedule(Snapshot.build([], []), pod("p"))
    assert isinstance(decision, Unschedulable)
    assert decision.message == "no nodes available to schedule pods"

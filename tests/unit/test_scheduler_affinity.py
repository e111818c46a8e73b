"""Where affinity and topology spread put a user's pods, and why some stay Pending."""

from __future__ import annotations

import functools

from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.scheduler.snapshot import Snapshot
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.factories import pod


def node(name: str, zone: str) -> objects_pb2.Node:
    labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}
    return factories.node(name=name, labels=labels, cpu="4", memory="8Gi")


NODES = [node("n1", "a"), node("n2", "a"), node("n3", "b")]
web = functools.partial(pod, labels={"app": "web"})


def place(snapshot: Snapshot, p: objects_pb2.Pod) -> str:
    decision = schedule(snapshot, p)
    assert isinstance(decision, Placement), f"pod {p.metadata.name} stayed Pending: {decision}"
    return decision.node


def test_required_node_affinity_honours_its_terms() -> None:
    p = pod(name="p")
    term = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    req = term.node_selector_terms.add().match_expressions.add()
    req.key, req.operator, req.values[:] = "topology.kubernetes.io/zone", "In", ["b"]
    assert place(Snapshot.build(NODES, []), p) == "n3"
    req.values[:] = ["c"]
    decision = schedule(Snapshot.build(NODES, []), p)
    assert isinstance(decision, Unschedulable)
    assert decision.message == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    )


def test_preferred_node_affinity_wins_among_equal_nodes() -> None:
    p = pod(name="p")
    preferred = p.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    choice = preferred.add(weight=50)
    expr = choice.preference.match_expressions.add()
    expr.key, expr.operator, expr.values[:] = "kubernetes.io/hostname", "In", ["n2"]
    assert place(Snapshot.build(NODES, []), p) == "n2"


def anti_affinity(p: objects_pb2.Pod, key: str) -> objects_pb2.Pod:
    anti = p.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    term = anti.add(topology_key=key)
    expr = term.label_selector.match_expressions.add()
    expr.key, expr.operator, expr.values[:] = "app", "In", ["web"]
    return p


def test_anti_affinity_puts_one_replica_per_zone_then_refuses() -> None:
    snapshot = Snapshot.build(NODES, [])
    zones = set()
    for i in range(2):
        p = anti_affinity(web(name=f"web-{i}"), "topology.kubernetes.io/zone")
        where = place(snapshot, p)
        zones.add(where[:2] if where != "n3" else "b")
        snapshot = snapshot.assume(p, where)
    assert len(zones) == 2, "two replicas landed in one zone"
    third = anti_affinity(web(name="web-2"), "topology.kubernetes.io/zone")
    decision = schedule(snapshot, third)
    assert isinstance(decision, Unschedulable)
    assert "3 node(s) didn't match pod anti-affinity rules" in decision.message


def test_a_running_pods_anti_affinity_keeps_others_away() -> None:
    loner = anti_affinity(
        pod(name="loner", node="n1", labels={"app": "db"}), "kubernetes.io/hostname"
    )
    snapshot = Snapshot.build(NODES, [loner])
    assert place(snapshot, web(name="w")) != "n1"


def test_pod_affinity_follows_its_group_and_the_first_pod_may_start() -> None:
    def with_cache(name: str) -> objects_pb2.Pod:
        p = pod(name=name, labels={"app": "cache"})
        terms = p.spec.affinity.pod_affinity.required_during_scheduling_ignored_during_execution
        terms.add(topology_key="kubernetes.io/hostname").label_selector.match_labels["app"] = (
            "cache"
        )
        return p

    snapshot = Snapshot.build(NODES, [])
    first = place(snapshot, with_cache("c-0"))  # nothing matches yet: it may go anywhere
    snapshot = snapshot.assume(with_cache("c-0"), first)
    assert place(snapshot, with_cache("c-1")) == first, "the second did not join the first"


def test_topology_spread_keeps_the_skew_within_max_skew() -> None:
    def spread(name: str) -> objects_pb2.Pod:
        p = web(name=name)
        constraint = p.spec.topology_spread_constraints.add(
            max_skew=1,
            topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="DoNotSchedule",
        )
        constraint.label_selector.match_labels["app"] = "web"
        return p

    snapshot = Snapshot.build(NODES, [])
    per_zone = {"a": 0, "b": 0}
    for i in range(4):
        p = spread(f"web-{i}")
        where = place(snapshot, p)
        per_zone["b" if where == "n3" else "a"] += 1
        snapshot = snapshot.assume(p, where)
    assert per_zone == {"a": 2, "b": 2}, f"zones got {per_zone}"


def test_init_containers_and_sidecars_count_as_kubernetes_counts_them() -> None:
    from controlplane.scheduler.snapshot import demand_of

    p = pod(name="p", containers=[factories.container(name="app", cpu="100m", memory="64Mi")])
    side = factories.container(name="proxy", cpu="50m", memory="32Mi")
    side.restart_policy = "Always"
    p.spec.init_containers.extend([side, factories.container(name="setup", cpu="1", memory="16Mi")])
    demand = demand_of(p)
    # cpu: the init container (1000m) with the sidecar before it (50m) outweighs 100m + 50m;
    # memory: the main container with the sidecar (96Mi) outweighs 32Mi + 16Mi.
    assert (demand.cpu, demand.memory) == (1050, 96 * 1024 * 1024)

"""The scheduler's incremental cluster view: notices in any order give the snapshot a rebuild
from the same objects would give; assumed pods are counted exactly once from decision to
confirmation; a failed binding un-assumes; a node deleted while a pod is assumed; and the
sampled search: small clusters score every node, large ones give every node its turn."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from controlplane.cache.informer import Notice
from controlplane.objects import ChangeType
from controlplane.scheduler.cluster import ClusterView
from controlplane.scheduler.schedule import Placement, nodes_to_find, schedule
from controlplane.scheduler.snapshot import NodeInfo, Snapshot
from pilothouse.v1 import objects_pb2
from tests import factories

SMALL = factories.container(cpu="100m", memory="64Mi")
ANTI = objects_pb2.PodAffinityTerm(topology_key="kubernetes.io/hostname")
ANTI.label_selector.match_labels["app"] = "db"


def _pod(name: str, node: str = "", phase: str = "Pending", **extra: object) -> objects_pb2.Pod:
    return factories.pod(name=name, node=node, phase=phase, owner="rs", containers=[SMALL], **extra)


def _added(obj: object) -> Notice:
    return Notice(ChangeType.ADDED, obj)  # type: ignore[arg-type]


def _modified(obj: object, old: object = None) -> Notice:
    return Notice(ChangeType.MODIFIED, obj, old)  # type: ignore[arg-type]


def _deleted(obj: object) -> Notice:
    return Notice(ChangeType.DELETED, obj, obj)  # type: ignore[arg-type]


def _feed(view: ClusterView, notice: Notice) -> None:
    if isinstance(notice.object, objects_pb2.Node):
        view.on_node(notice)
    else:
        view.on_pod(notice)


def _summary(info: NodeInfo) -> tuple[object, ...]:
    names = sorted(p.metadata.name for p in info.pods)
    return (
        info.name,
        names,
        info.requested,
        info.scoring_requested,
        dict(info.owners),
        info.allocatable_cpu,
    )


def _same(view: ClusterView, expected: Snapshot) -> None:
    got = view.snapshot()
    assert sorted(got.nodes) == sorted(expected.nodes)
    for name, info in expected.nodes.items():
        assert _summary(got.nodes[name]) == _summary(info), name
    anti = sorted((i.name, p.metadata.name) for i, p in got.anti_affine())
    assert anti == sorted((i.name, p.metadata.name) for i, p in expected.anti_affine())


def test_notices_in_every_order_give_the_rebuilt_snapshot() -> None:
    n1, n2 = factories.node(name="n1"), factories.node(name="n2")
    n1_bigger = factories.node(name="n1", cpu="8")
    running = _pod("a", "n1", "Running")
    running_again = _pod("a", "n1", "Running")
    running_again.status.conditions.add(type="Ready", status="True")  # a status report
    finished = _pod("b", "n2", "Succeeded")
    b_running = _pod("b", "n2", "Running")
    anti = _pod("c", "n2", "Running", labels={"app": "db"})
    anti.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution.append(
        ANTI
    )
    gone = _pod("d", "n1", "Running")
    notices = [
        _added(n1),
        _added(n2),
        _added(running),
        _modified(running_again, running),
        _added(b_running),
        _modified(finished, b_running),  # finished: holds nothing
        _added(anti),
        _added(gone),
        _deleted(gone),
        _modified(n1_bigger, n1),
    ]
    expected = Snapshot.build([n1_bigger, n2], [running_again, finished, anti])
    # Each object's own notices stay in order (an informer's are); across objects, any order.
    streams: dict[str, list[Notice]] = {}
    for notice in notices:
        streams.setdefault(type(notice.object).__name__ + notice.key, []).append(notice)
    orders = 0
    for order in itertools.permutations(streams):
        view = ClusterView()
        queues = {key: list(streams[key]) for key in order}
        rng = random.Random(orders)
        while queues:
            key = rng.choice([k for k in order if k in queues])
            _feed(view, queues[key].pop(0))
            if not queues[key]:
                del queues[key]
        _same(view, expected)
        orders += 1
    assert orders == 720  # 6 objects


def test_a_pod_bound_to_an_unknown_node_counts_once_the_node_appears() -> None:
    view = ClusterView()
    view.on_pod(_added(_pod("a", "late", "Running")))
    assert "late" not in view.snapshot().nodes
    view.on_node(_added(factories.node(name="late")))
    assert [p.metadata.name for p in view.snapshot().nodes["late"].pods] == ["a"]


def test_an_assumed_pod_is_counted_once_until_and_after_confirmation() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    pending = _pod("a")
    view.on_pod(_added(pending))
    assert view.snapshot().nodes["n1"].pods == ()
    bound = _pod("a", "n1")
    view.assume(bound)
    assert view.is_assumed("default/a")
    assert len(view.snapshot().nodes["n1"].pods) == 1
    # A notice of a version written before the binding (still unbound) changes nothing.
    stale = _pod("a")
    stale.status.conditions.add(type="PodScheduled", status="False")
    view.on_pod(_modified(stale, pending))
    assert len(view.snapshot().nodes["n1"].pods) == 1
    assert view.is_assumed("default/a")
    view.on_pod(_modified(_pod("a", "n1"), stale))  # the informer shows the binding
    assert not view.is_assumed("default/a")
    assert view.snapshot().nodes["n1"].requested.cpu == 100
    view.forget("default/a")  # too late to un-assume: it is bound
    assert view.snapshot().nodes["n1"].requested.cpu == 100


def test_a_failed_binding_un_assumes() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    view.on_pod(_added(_pod("a")))
    view.assume(_pod("a", "n1"))
    view.forget("default/a")
    info = view.snapshot().nodes["n1"]
    assert (info.pods, info.requested.cpu, dict(info.owners)) == ((), 0, {})
    assert not view.is_assumed("default/a")


def test_a_node_deleted_while_a_pod_is_assumed() -> None:
    view = ClusterView()
    n1 = factories.node(name="n1")
    view.on_node(_added(n1))
    view.on_node(_added(factories.node(name="n2")))
    view.assume(_pod("a", "n1"))
    view.on_node(_deleted(n1))
    assert sorted(view.snapshot().nodes) == ["n2"]
    assert view.is_assumed("default/a")
    # The node comes back before the binding is seen: the pod counts there, once.
    view.on_node(_added(n1))
    assert [p.metadata.name for p in view.snapshot().nodes["n1"].pods] == ["a"]
    view.on_pod(_added(_pod("a", "n1")))
    assert view.snapshot().nodes["n1"].requested.cpu == 100
    # Deleted again, and the pod with it: nothing is left anywhere.
    view.on_node(_deleted(n1))
    view.on_pod(_deleted(_pod("a", "n1")))
    view.on_node(_added(n1))
    assert view.snapshot().nodes["n1"].pods == ()


def test_forget_after_the_node_went_leaves_nothing_behind() -> None:
    view = ClusterView()
    n1 = factories.node(name="n1")
    view.on_node(_added(n1))
    view.assume(_pod("a", "n1"))
    view.on_node(_deleted(n1))
    view.forget("default/a")  # the binding failed (the node is gone)
    view.on_node(_added(n1))
    assert view.snapshot().nodes["n1"].pods == ()


def test_a_deleted_older_pod_of_the_same_name_keeps_the_assumption() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    old = _pod("a", uid="old")
    view.assume(_pod("a", "n1", uid="new"))
    view.on_pod(_deleted(old))
    assert view.is_assumed("default/a")
    assert len(view.snapshot().nodes["n1"].pods) == 1


def test_a_snapshot_handed_out_does_not_change_afterwards() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    before = view.snapshot()
    view.assume(_pod("a", "n1"))
    assert before.nodes["n1"].pods == ()
    assert len(view.snapshot().nodes["n1"].pods) == 1


# ---------------------------------------------------------------- sampling


def test_nodes_to_find_follows_kubernetes_adaptive_percentage() -> None:
    assert [nodes_to_find(n) for n in (0, 3, 99, 100, 200, 1000, 5000, 10000)] == [
        0,
        3,
        99,
        100,  # 50% of 100 is under the floor of 100
        100,  # 48% of 200 = 96: the floor again
        420,  # 42%
        500,  # 10%
        500,  # 5%
    ]


def _nodes(count: int) -> list[objects_pb2.Node]:
    return [factories.node(name=f"n{i:04}", cpu="64", memory="256Gi") for i in range(count)]


def test_a_small_cluster_scores_every_node() -> None:
    nodes = _nodes(99)
    # The emptiest node wins wherever the search starts: every node was scored.
    bound = [_pod(f"b{i}", f"n{i:04}", "Running") for i in range(99) if i != 57]
    snapshot = Snapshot.build(nodes, bound)
    for start in (0, 13, 58, 98):
        decision = schedule(snapshot, _pod("x"), start=start)
        assert decision == Placement(node="n0057", score=decision.score)
        assert decision.searched == 99


def test_a_large_cluster_gives_every_node_its_turn() -> None:
    nodes = _nodes(1000)
    view = ClusterView()
    for node in nodes:
        view.on_node(_added(node))
    start, visited = 0, Counter[str]()
    for i in range(30):
        snapshot = view.snapshot()
        names = list(snapshot.nodes)
        decision = schedule(snapshot, _pod(f"p{i}"), start=start)
        assert isinstance(decision, Placement)
        assert decision.searched == nodes_to_find(1000)  # every node fits: stops at 420
        visited.update(names[(start + k) % 1000] for k in range(decision.searched))
        start = (start + decision.searched) % 1000
        view.assume(_pod(f"p{i}", decision.node))
    assert set(visited) == {n.metadata.name for n in nodes}
    assert max(visited.values()) - min(visited.values()) <= 1  # turns come round evenly
    per_node = Counter(p for info in view.snapshot().nodes.values() for p in [len(info.pods)])
    assert per_node == {0: 970, 1: 30}  # spread: no node took two


def test_a_sampled_search_still_finds_the_one_node_that_fits() -> None:
    nodes = _nodes(1000)
    nodes[321] = factories.node(name="n0321", cpu="64", memory="256Gi", labels={"disk": "ssd"})
    snapshot = Snapshot.build(nodes, [])
    pod = _pod("x", node_selector={"disk": "ssd"})
    for start in (0, 322, 999):
        decision = schedule(snapshot, pod, start=start)
        assert decision == Placement(node="n0321", score=decision.score)
    assert schedule(snapshot, pod, start=322).searched == 1000  # it is the last one seen


def test_a_counted_pod_whose_labels_or_owner_change_is_counted_anew() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    before = _pod("a", "n1", "Running", labels={"app": "db"})
    view.on_pod(_added(before))
    after = _pod("a", "n1", "Running", labels={"app": "web"})
    del after.metadata.owner_references[:]  # orphaned
    view.on_pod(_modified(after, before))
    info = view.snapshot().nodes["n1"]
    assert [dict(p.metadata.labels) for p in info.pods] == [{"app": "web"}]
    assert (dict(info.owners), info.requested.cpu) == ({}, 100)


def test_a_status_report_swaps_the_pod_held_not_the_sums() -> None:
    view = ClusterView()
    view.on_node(_added(factories.node(name="n1")))
    pending, bound = _pod("a"), _pod("a", "n1")
    view.on_pod(_added(pending))
    view.assume(bound)
    running = _pod("a", "n1", "Running")
    view.on_pod(_modified(running, pending))
    info = view.snapshot().nodes["n1"]
    assert info.pods[0] is running  # the older versions are not kept alive
    assert (view.counted("default/a"), info.requested.cpu) == (running, 100)

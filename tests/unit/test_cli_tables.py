"""`get` tables: kubectl's columns, cells, ages and spacing, computed from objects alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from pilothouse.cli import tables
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(NOW - timedelta(seconds=seconds))
    return stamp


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-1, "0s"),
        (-5, "<invalid>"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 300, "3h5m"),
        (10 * 3600, "10h"),
        (47 * 3600, "47h"),
        (49 * 3600, "2d1h"),
        (4 * 86400, "4d"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_unset_timestamp_is_unknown() -> None:
    assert tables.age(Timestamp(), NOW) == "<unknown>"


def test_layout_matches_kubectl_spacing() -> None:
    table = tables.Table(
        headers=("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
        rows=(("nginx-deployment", "3/3", "3", "3", "18s"), ("a", "0/1", "0", "0", "5m")),
    )
    assert tables.render(table).splitlines() == [
        "NAME               READY   UP-TO-DATE   AVAILABLE   AGE",
        "nginx-deployment   3/3     3            3           18s",
        "a                  0/1     0            0           5m",
    ]


def deployment() -> o.Deployment:
    """web in prod, 4 days old: 3 wanted of two containers, 2 ready and available."""
    d = factories.deployment(
        namespace="prod",
        replicas=3,
        containers=[
            factories.container(name="httpd"),
            factories.container(name="side", image="busybox:1.36"),
        ],
    )
    d.metadata.creation_timestamp.CopyFrom(ago(4 * 86400))
    d.spec.selector.match_labels["tier"] = "front"
    d.status.ready_replicas = 2
    d.status.updated_replicas = 3
    d.status.available_replicas = 2
    return d


def test_deployment_columns_and_wide_columns() -> None:
    plain = tables.table(Kind.DEPLOYMENT, [deployment()], now=NOW)
    assert plain.headers == ("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
    assert plain.rows == (("web", "2/3", "3", "2", "4d"),)
    wide = tables.table(Kind.DEPLOYMENT, [deployment()], now=NOW, wide=True, with_namespace=True)
    assert wide.headers == (
        "NAMESPACE",
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    )
    assert wide.rows[0][0] == "prod"
    assert wide.rows[0][-3:] == ("httpd,side", "busybox:stable,busybox:1.36", "app=web,tier=front")


def test_replicaset_columns() -> None:
    rs = factories.replica_set(name="web-5d8c", replicas=3)
    rs.metadata.creation_timestamp.CopyFrom(ago(30))
    rs.status.replicas = 3
    rs.status.ready_replicas = 1
    table = tables.table(Kind.REPLICASET, [rs], now=NOW)
    assert table.headers == ("NAME", "DESIRED", "CURRENT", "READY", "AGE")
    assert table.rows == (("web-5d8c", "3", "3", "1", "30s"),)


def pod(*statuses: o.ContainerStatus, phase: str = "Running") -> o.Pod:
    """A pod 90 s old whose containers have these statuses."""
    containers = [factories.container(name=s.name, image="busybox") for s in statuses]
    p = factories.pod(name="web-5d8c-abcde", namespace="", uid="", containers=containers)
    p.metadata.creation_timestamp.CopyFrom(ago(90))
    p.status.phase = phase
    p.status.container_statuses.extend(statuses)
    return p


def running(name: str = "c", *, ready: bool = True, restarts: int = 0) -> o.ContainerStatus:
    status = o.ContainerStatus(name=name, ready=ready, restart_count=restarts)
    status.state.running.started_at.CopyFrom(ago(10))
    return status


def waiting(reason: str, *, restarts: int = 0) -> o.ContainerStatus:
    status = o.ContainerStatus(name="c", restart_count=restarts)
    status.state.waiting.reason = reason
    return status


def terminated(reason: str = "", *, exit_code: int = 0, signal: int = 0) -> o.ContainerStatus:
    status = o.ContainerStatus(name="c")
    status.state.terminated.reason = reason
    status.state.terminated.exit_code = exit_code
    status.state.terminated.signal = signal
    return status


@pytest.mark.parametrize(
    ("p", "status", "ready"),
    [
        (pod(running()), "Running", 1),
        (pod(running(ready=False)), "Running", 0),
        (pod(waiting("CrashLoopBackOff", restarts=4), phase="Running"), "CrashLoopBackOff", 0),
        (pod(waiting("ImagePullBackOff"), phase="Pending"), "ImagePullBackOff", 0),
        (pod(waiting("ContainerCreating"), phase="Pending"), "ContainerCreating", 0),
        (pod(terminated("OOMKilled", exit_code=137), phase="Running"), "OOMKilled", 0),
        (pod(terminated(exit_code=3), phase="Failed"), "ExitCode:3", 0),
        (pod(terminated(signal=9), phase="Failed"), "Signal:9", 0),
        (pod(terminated("Completed"), phase="Succeeded"), "Completed", 0),
        (pod(phase=""), "Pending", 0),
    ],
)
def test_pod_status_is_computed_as_kubectl_does(p: o.Pod, status: str, ready: int) -> None:
    reason, ready_count, _, _ = tables.pod_status(p)
    assert (reason, ready_count) == (status, ready)


def test_completed_sidecar_with_a_running_container_shows_running_or_notready() -> None:
    p = pod(terminated("Completed"), running("main"))
    assert tables.pod_status(p)[0] == "NotReady"
    p.status.conditions.add(type="Ready", status="True")
    assert tables.pod_status(p)[0] == "Running"


def test_deleted_pod_is_terminating() -> None:
    p = pod(running())
    p.metadata.deletion_timestamp.CopyFrom(ago(1))
    assert tables.pod_status(p)[0] == "Terminating"


def test_pod_row_with_restarts_and_wide_columns() -> None:
    status = running(restarts=3)
    status.last_state.terminated.finished_at.CopyFrom(ago(300))
    p = pod(status)
    p.status.pod_ip = "10.1.0.7"
    p.spec.node_name = "n2"
    table = tables.table(Kind.POD, [p], now=NOW, wide=True)
    assert table.headers == ("NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE")
    assert table.rows == (
        ("web-5d8c-abcde", "1/1", "Running", "3 (5m ago)", "90s", "10.1.0.7", "n2"),
    )
    p.status.pod_ip = ""
    p.spec.node_name = ""
    assert tables.table(Kind.POD, [p], now=NOW, wide=True).rows[0][-2:] == ("<none>", "<none>")


def node(name: str = "n1", *, ready: str = "True") -> o.Node:
    """A worker node 2 h old, as `get nodes -o wide` shows it: 2 cpu, 1Gi, its versions."""
    worker = {"node-role.kubernetes.io/worker": ""}
    n = factories.node(name=name, labels=worker, memory="1Gi", ready=ready)
    n.metadata.creation_timestamp.CopyFrom(ago(7200))
    n.status.addresses.add(type="InternalIP", address="10.0.0.5")
    info = n.status.node_info
    info.kubelet_version = "v0.1.0"
    info.os_image = "Debian GNU/Linux 12 (bookworm)"
    info.kernel_version = "6.1.0"
    info.container_runtime_version = "runc://1.1.5"
    return n


def test_node_columns_status_roles_allocation_and_wide() -> None:
    cordoned = node("n2", ready="False")
    cordoned.spec.unschedulable = True
    consumer = pod(running())
    consumer.spec.node_name = "n1"
    consumer.spec.containers[0].resources.requests.update({"cpu": "500m", "memory": "256Mi"})
    table = tables.table(Kind.NODE, [node(), cordoned], now=NOW, wide=True, pods=[consumer])
    assert table.headers == (
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "CPU-ALLOCATED",
        "MEMORY-ALLOCATED",
        "INTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    )
    first, second = table.rows
    assert first[:5] == ("n1", "Ready", "worker", "120m", "v0.1.0")
    assert first[5:7] == ("500m/2 (25%)", "256Mi/1Gi (25%)"), first
    assert first[7:] == ("10.0.0.5", "Debian GNU/Linux 12 (bookworm)", "6.1.0", "runc://1.1.5")
    assert second[1] == "NotReady,SchedulingDisabled"
    assert second[5] == "0/2 (0%)"


def test_nodes_without_pods_information_have_kubectl_columns_only() -> None:
    table = tables.table(Kind.NODE, [node()], now=NOW)
    assert table.headers == ("NAME", "STATUS", "ROLES", "AGE", "VERSION")


def test_event_columns_sorted_by_last_seen_with_counts() -> None:
    older = o.Event(reason="Scheduled", message="assigned to n1", type="Normal", count=1)
    older.last_timestamp.CopyFrom(ago(120))
    older.involved_object.kind = "Pod"
    older.involved_object.name = "web-1"
    newer = o.Event(reason="BackOff", message="back-off restarting", type="Warning", count=5)
    newer.first_timestamp.CopyFrom(ago(600))
    newer.last_timestamp.CopyFrom(ago(20))
    newer.involved_object.kind = "Pod"
    newer.involved_object.name = "web-1"
    table = tables.table(Kind.EVENT, [newer, older], now=NOW)
    assert table.headers == ("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
    assert table.rows == (
        ("2m", "Normal", "Scheduled", "pod/web-1", "assigned to n1"),
        ("20s (x5 over 10m)", "Warning", "BackOff", "pod/web-1", "back-off restarting"),
    )


def test_watch_layout_keeps_columns_aligned_as_rows_arrive() -> None:
    layout = tables.Layout()
    layout.fit([("NAME", "READY", "AGE"), ("web", "0/3", "1s")])
    first = layout.line(("NAME", "READY", "AGE"))
    later = layout.line(("web", "3/3", "9s"))
    assert first.index("READY") == later.index("3/3")

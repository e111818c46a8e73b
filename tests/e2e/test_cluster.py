"""`pilothouse up --nodes 3`: three real agents, each in a network namespace of its own (as root).

What a user relies on, end to end through the CLI: the Deployment's pods spread over the three
nodes, each with an IP from its node's pod CIDR in `get pods -o wide`; a pod on one node fetches
a page from a busybox httpd pod on another by that IP; cutting a node's link makes the control
plane mark it NotReady and run its pods elsewhere, and restoring it makes the node stop its
stale containers (each replica then runs exactly once); `pilothouse down` (also after kill -9 of
every process of the cluster) leaves no namespace, bridge, veth, mount, cgroup or process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster import cleanup, processes
from pilothouse.cli.cluster import netns as netns_hosts
from tests import factories
from tests.e2e.network import missing_support
from tests.fixtures.cluster import LocalClusterRun, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def cluster(local_cluster: LocalClusterRun) -> Iterator[LocalClusterRun]:
    if reason := missing_support():
        pytest.skip(reason)
    yield local_cluster


def cli_json(cluster: LocalClusterRun, *args: str) -> list[dict[str, object]]:
    got = cluster.cli("get", *args, "-o", "json")
    assert got.returncode == 0, f"`pilothouse get {' '.join(args)} -o json` failed:\n{got.stderr}"
    data = json.loads(got.stdout) if got.stdout.strip() else {}
    return list(data.get("items", [data] if data else []))


def pods_wide(cluster: LocalClusterRun) -> dict[str, dict[str, str]]:
    """`get pods -o wide` as a user reads it: pod name -> its columns."""
    got = cluster.cli("get", "pods", "-o", "wide")
    assert got.returncode == 0, f"`pilothouse get pods -o wide` failed:\n{got.stderr}"
    lines = [line.split() for line in got.stdout.splitlines() if line.strip()]
    if not lines or lines[0][0] != "NAME":
        return {}
    header = lines[0]
    return {row[0]: dict(zip(header, row, strict=False)) for row in lines[1:]}


def running_by_node(cluster: LocalClusterRun) -> dict[str, dict[str, str]]:
    """Running pods of `get pods -o wide`: pod name -> {"NODE": …, "IP": …}."""
    return {n: p for n, p in pods_wide(cluster).items() if p.get("STATUS") == "Running"}


def node_cidrs(cluster: LocalClusterRun) -> dict[str, str]:
    cidrs = {}
    for node in cli_json(cluster, "nodes"):
        spec = node.get("spec", {})
        assert isinstance(spec, dict)
        name = node["metadata"]["name"]  # type: ignore[index]
        cidrs[str(name)] = str(spec.get("podCIDR") or "")
    return cidrs


def node_ready(cluster: LocalClusterRun, name: str) -> bool:
    for node in cli_json(cluster, "nodes"):
        if node["metadata"]["name"] == name:  # type: ignore[index]
            conditions = node.get("status", {}).get("conditions", [])  # type: ignore[union-attr]
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return False


def runc_root(cluster: LocalClusterRun, node: str) -> Path:
    return cluster.layout.node(node) / "runtime" / "runc"


def containers(cluster: LocalClusterRun, node: str) -> dict[str, str]:
    """`runc list` on a node: container id -> status."""
    got = subprocess.run(
        ["runc", "--root", str(runc_root(cluster, node)), "list", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if got.returncode != 0:
        return {}
    return {c["id"]: c["status"] for c in json.loads(got.stdout or "null") or []}


def fetch_from(cluster: LocalClusterRun, node: str, pod: str, url: str) -> str:
    """GET `url` from inside the container of `pod` on `node` (runc exec busybox wget).

    Debian's static busybox crashes on `wget -T`, so `timeout` bounds each try instead.
    """
    ids = [i for i in containers(cluster, node) if f"_{pod}_" in i]
    assert ids, f"pod {pod} has no container on {node}"
    last = ""
    for _ in range(20):
        got = subprocess.run(
            ["runc", "--root", str(runc_root(cluster, node)), "exec", ids[0],
             "timeout", "3", "busybox", "wget", "-q", "-O-", url],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if got.returncode == 0:
            return got.stdout
        last = got.stderr.strip()
        time.sleep(0.2)
    raise AssertionError(f"a pod on {node} could not fetch {url}: {last}")


def apply_web(cluster: LocalClusterRun, *, replicas: int) -> None:
    script = "echo hello from $(hostname) > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"
    httpd = factories.container(name="httpd", command=("sh", "-c", script))
    web = factories.deployment(
        name="web", labels={}, replicas=replicas, grace=1, typed=True, containers=[httpd]
    )
    applied = cluster.apply(factories.manifest(web), name="web.yaml")
    assert applied.returncode == 0, f"`pilothouse apply` failed:\n{applied.stderr}"


def assert_nothing_left(cluster: LocalClusterRun, after: str) -> None:
    assert cluster.namespaces() == [], f"network namespaces of the cluster survive {after}"
    assert cluster.links() == [], f"the cluster's bridge or veths survive {after}"
    assert cluster.running_processes() == [], f"processes of the cluster survive {after}"
    assert cluster.mounts() == [], f"mounts under the data dir survive {after}"
    assert cluster.cgroups() == [], f"cgroups of the cluster survive {after}"
    if shutil.which("iptables"):
        rules = subprocess.run(
            ["iptables", "-S", "FORWARD"], capture_output=True, text=True, timeout=30
        ).stdout
        tag = f"pilothouse-{cluster.layout.cluster_id}"
        assert tag not in rules, f"the cluster's iptables rules survive {after}: {rules}"


def link_of(cluster: LocalClusterRun, node: str) -> str:
    return netns_hosts.HostNetwork.link(cluster.layout.cluster_id, node)


def set_link(cluster: LocalClusterRun, node: str, *, up: bool) -> None:
    """Cut or restore a node's cable: its veth on the cluster's bridge."""
    subprocess.run(
        ["ip", "link", "set", link_of(cluster, node), "up" if up else "down"],
        check=True,
        timeout=30,
    )


def test_three_nodes_in_namespaces_serve_each_other_fail_over_and_leave_nothing(
    cluster: LocalClusterRun,
) -> None:
    started = cluster.up(nodes=3)
    assert started.returncode == 0, f"`up -d --nodes 3` failed:\n{started.stderr}"
    names = ["node-1", "node-2", "node-3"]
    assert len(cluster.namespaces()) == 3, "`up` did not put each node in a namespace"
    assert cluster.secure, "`up` made a plaintext cluster: its agents did not join with a token"
    cidrs = node_cidrs(cluster)
    assert sorted(cidrs) == names and all(cidrs.values()), f"nodes without pod CIDRs: {cidrs}"
    assert len(set(cidrs.values())) == 3, f"two nodes share a pod CIDR: {cidrs}"

    # A Deployment runs across the three hosts, each pod with an IP from its node's CIDR.
    apply_web(cluster, replicas=3)
    pods = wait_for(
        "3 web pods Running", lambda: (p := running_by_node(cluster)) and len(p) == 3 and p
    )
    assert sorted(p["NODE"] for p in pods.values()) == names, f"pods not spread: {pods}"
    for name, pod in pods.items():
        network = ipaddress.ip_network(cidrs[pod["NODE"]])
        assert ipaddress.ip_address(pod["IP"]) in network, (
            f"pod {name} on {pod['NODE']} shows IP {pod['IP']}, not from the node's {network}"
        )

    # A pod on node-1 fetches the page of the httpd pod on node-2 by its pod IP.
    by_node = {p["NODE"]: name for name, p in pods.items()}
    target = by_node["node-2"]
    page = fetch_from(cluster, "node-1", by_node["node-1"], f"http://{pods[target]['IP']}:8080/")
    assert page.strip() == f"hello from {target}", f"node-1 got another page: {page!r}"

    # Cut node-3's link: NotReady, and its pod runs again on node-1 or node-2.
    stale = by_node["node-3"]
    assert any(f"_{stale}_" in c for c in containers(cluster, "node-3"))
    set_link(cluster, "node-3", up=False)
    cut = time.monotonic()
    wait_for("node-3 NotReady after its link was cut", lambda: not node_ready(cluster, "node-3"))

    def replaced() -> dict[str, dict[str, str]] | None:
        running = running_by_node(cluster)
        on_others = {n: p for n, p in running.items() if p["NODE"] != "node-3"}
        return on_others if len(on_others) == 3 else None

    moved = wait_for("node-3's pod replaced on node-1/node-2", replaced, within=60)
    print(f"\nnode-3 cut -> 3 replicas Running elsewhere: {time.monotonic() - cut:.1f} s")
    for name, pod in moved.items():
        network = ipaddress.ip_network(cidrs[pod["NODE"]])
        assert ipaddress.ip_address(pod["IP"]) in network, f"moved pod {name} has {pod['IP']}"

    # Restore it: the node is fenced and stops the stale container; each replica runs once.
    set_link(cluster, "node-3", up=True)
    restored = time.monotonic()
    wait_for("node-3 Ready again after its link came back", lambda: node_ready(cluster, "node-3"))
    wait_for(
        "node-3 stopping its stale container",
        lambda: not containers(cluster, "node-3"),
        within=30,
    )
    print(f"node-3 restored -> stale container gone: {time.monotonic() - restored:.1f} s")
    running: dict[str, list[str]] = {}
    for node in names:
        for cid, status in containers(cluster, node).items():
            if status == "running":
                running.setdefault(cid, []).append(node)
    assert len(running) == 3 and all(len(n) == 1 for n in running.values()), (
        f"replicas do not run exactly once across the nodes: {running}"
    )

    stopped = cluster.down()
    assert stopped.returncode == 0, f"`down` failed:\n{stopped.stderr}"
    assert_nothing_left(cluster, "`down`")


def cluster_pids(cluster: LocalClusterRun) -> set[int]:
    """Every process of the cluster: the supervisor, what names the data dir, what runs in the
    cluster's cgroups (containers) and in its node namespaces."""
    pids = {r.pid for r in processes.naming(cluster.data_dir, programs=cleanup.PROGRAMS)}
    supervisor = cluster.supervisor()
    if supervisor is not None and supervisor.alive():
        pids.add(supervisor.pid)
    for tree in cluster.cgroups():
        for procs in tree.rglob("cgroup.procs"):
            pids |= {int(p) for p in procs.read_text().split()}
    for found in netns_hosts.HostNetwork().processes(cluster.layout.cluster_id).values():
        pids |= set(found)
    pids.discard(os.getpid())
    return pids


def test_down_after_kill_9_of_every_process_leaves_nothing(cluster: LocalClusterRun) -> None:
    started = cluster.up(nodes=2)
    assert started.returncode == 0, f"`up -d --nodes 2` failed:\n{started.stderr}"
    apply_web(cluster, replicas=2)
    wait_for("2 web pods Running", lambda: len(running_by_node(cluster)) == 2)

    victims = cluster_pids(cluster)
    assert len(victims) > 4, f"too few processes found to crash the cluster: {victims}"
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    supervisor = cluster.supervisor()
    assert supervisor is not None
    wait_for("the supervisor to die", lambda: not supervisor.alive(), within=10)
    assert cluster.namespaces(), "the namespaces went away with the processes (nothing to test)"

    stopped = cluster.down()
    assert stopped.returncode == 0, f"`down` after kill -9 failed:\n{stopped.stderr}"
    assert_nothing_left(cluster, "kill -9 and `down`")

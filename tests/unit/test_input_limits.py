"""Bounded inputs and reserved ports in the pure parts (issue 11, item 5): manifests refused
before they are decoded when too large, too deep or expanding through aliases; the cluster
policy's reserved hostPorts with their field paths; the scheduler treating each node's agent
port as taken; which labels a node may set on itself (item 4)."""

from __future__ import annotations

import io

import pytest

from controlplane.nodes import labels
from controlplane.scheduler.schedule import Placement, Unschedulable, schedule
from controlplane.scheduler.snapshot import Snapshot
from pilothouse.manifests import ManifestError, load, loader
from pilothouse.manifests.validation import policy
from tests import factories

POD = (
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n"
    "  - name: c\n    image: busybox\n"
)


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load(["-"], stdin=io.StringIO(text))
    return [p.message for p in caught.value.problems]


def test_deep_huge_and_alias_bombs_are_refused_before_decoding() -> None:
    assert load(["-"], stdin=io.StringIO(POD)), "a plain pod manifest must load"
    deep = POD + "  x: " + "[" * 200 + "]" * 200 + "\n"
    assert problems(deep) == ["the manifest is nested deeper than 64 levels (line 9); refused"]
    laughs = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
    )
    [message] = problems(laughs)
    assert "expands to more than 200000 YAML nodes" in message, message
    huge = POD + "  # " + "x" * (4 * 1024 * 1024) + "\n"
    [message] = problems(huge)
    assert "larger than 3 MiB" in message, message
    # Reading stopped at the limit: a file of any size costs at most 3 MiB to refuse.
    assert loader.MAX_SOURCE_BYTES == 3 * 1024 * 1024


def test_reserved_host_ports_are_refused_with_their_field_paths() -> None:
    pod = factories.pod(containers=[factories.container(host_port=7071, container_port=80)])
    pod.spec.init_containers.add(name="init", image="busybox").ports.add(
        container_port=53, host_port=53
    )
    rules = policy.ClusterPolicy(reserved_host_ports=frozenset({7071}), min_host_port=1024)
    assert policy.check(pod, rules) == [
        (
            "spec.containers[0].ports[0].hostPort",
            "Invalid value: 7071: the port is reserved on this cluster (a node agent's, the "
            "control plane's, etcd's or the registry's port): choose another hostPort",
        ),
        (
            "spec.initContainers[0].ports[0].hostPort",
            "Invalid value: 53: host ports below 1024 are not allowed on this cluster (the "
            "control plane's --min-host-port)",
        ),
    ]
    assert policy.has_host_ports(pod)
    assert not policy.has_host_ports(factories.pod())


def test_the_scheduler_never_puts_a_host_port_on_the_nodes_agent_port() -> None:
    n1, n2 = factories.node(name="n1"), factories.node(name="n2")
    n1.status.daemon_endpoints.kubelet_endpoint.port = 40001
    n2.status.daemon_endpoints.kubelet_endpoint.port = 40002
    pod = factories.pod(
        name="p", containers=[factories.container(host_port=40001, container_port=80)]
    )
    decision = schedule(Snapshot.build([n1, n2], []), pod)
    assert isinstance(decision, Placement) and decision.node == "n2", decision
    decision = schedule(Snapshot.build([n1], []), pod)
    assert isinstance(decision, Unschedulable)
    assert "didn't have free ports" in decision.message


def test_which_labels_a_node_may_set_on_itself() -> None:
    assert labels.forbidden("n1", {"kubernetes.io/hostname": "n1", "disk": "ssd"}) == []
    assert labels.forbidden("n1", {"topology.kubernetes.io/zone": "a"}) == []
    assert labels.forbidden("n1", {"node.kubernetes.io/exclude-from-lb": ""}) == []
    assert labels.forbidden("n1", {"x.kubelet.kubernetes.io/y": "1"}) == []
    assert labels.forbidden("n1", {"example.com/rack": "3"}) == []
    for refused in (
        {"kubernetes.io/hostname": "n2"},
        {"node-role.kubernetes.io/control-plane": ""},
        {"node-restriction.kubernetes.io/x": "y"},
        {"node-restriction.pilothouse.io/pool": "a"},
        {"pilothouse.io/agent-instance": "x"},
        {"k8s.io/anything": "x"},
    ):
        assert labels.forbidden("n1", refused), f"a node may set {refused} on itself"

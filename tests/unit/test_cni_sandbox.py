"""Pod sandboxes without root: names, hostPorts from the pod spec, modes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.network.cni import PortMapping
from nodeagent.network.sandbox import Mode, PodNetworks, Sandbox, port_mappings, sandbox_id
from pilothouse.v1 import objects_pb2
from tests import factories


def make_pod(uid: str = "u1") -> objects_pb2.Pod:
    web = factories.container(name="web", host_port=8080, container_port=80)
    web.ports.add(container_port=9090)  # no hostPort: nothing to map
    dns = factories.container(name="dns")
    dns.ports.add(container_port=53, host_port=5353, protocol="UDP", host_ip="172.30.0.11")
    return factories.pod(name="web-7d9f-abcde", namespace="", uid=uid, containers=[web, dns])


def test_a_replaced_pod_gets_another_sandbox() -> None:
    assert sandbox_id(make_pod("u1")) == "default_web-7d9f-abcde_u1"
    assert sandbox_id(make_pod("u1")) != sandbox_id(make_pod("u2"))


def test_host_ports_come_from_every_container() -> None:
    assert port_mappings(make_pod()) == [
        PortMapping(host_port=8080, container_port=80, protocol="tcp"),
        PortMapping(host_port=5353, container_port=53, protocol="udp", host_ip="172.30.0.11"),
    ]


def test_cni_mode_needs_a_pod_cidr(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--pod-cidr"):
        PodNetworks(mode=Mode.CNI, state_dir=tmp_path)


async def test_none_and_host_modes_make_nothing(tmp_path: Path) -> None:
    none = PodNetworks(mode=Mode.NONE, state_dir=tmp_path)
    assert await none.attach(make_pod()) == Sandbox(netns_path=None, pod_ip="")
    host = PodNetworks(mode=Mode.HOST, state_dir=tmp_path, node_ip="172.30.0.11")
    assert await host.attach(make_pod()) == Sandbox("/proc/self/ns/net", "172.30.0.11")
    await host.detach(make_pod())
    assert await host.detach_others([]) == []
    assert os.listdir(tmp_path) == [], "modes without sandboxes wrote files"

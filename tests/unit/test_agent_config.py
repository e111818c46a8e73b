"""`pilothouse agent` flags: what an operator may pass, and the one-line errors otherwise."""

from __future__ import annotations

import pytest

from nodeagent import config as settings
from nodeagent.api import nodeinfo


def parse(*argv: str) -> settings.Config:
    return settings.parse(["--name", "n1", "--state-dir", "/tmp/ph-agent-config-test", *argv])


def error_of(*argv: str) -> str:
    with pytest.raises(settings.ConfigError) as caught:
        parse(*argv)
    return str(caught.value)


def test_cni_without_a_pod_cidr_needs_a_control_plane_to_get_one_from() -> None:
    message = error_of("--network", "cni")
    assert "--pod-cidr" in message and "--server" in message, (
        f"a standalone cni agent with no pod CIDR should say what to add, said: {message}"
    )
    joined = parse("--network", "cni", "--server", "127.0.0.1:7070", "--insecure")
    assert joined.pod_cidr == "", "an agent given none should ask the control plane for one"
    standalone = parse("--network", "cni", "--pod-cidr", "10.244.7.0/24")
    assert standalone.pod_cidr == "10.244.7.0/24"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.244.1.1/24", "host bits"),
        ("10.244.1.0/33", "10.244.1.0/33"),
        ("fd00::/64", "IPv4 only"),
        ("pods", "10.244.1.0/24"),
    ],
)
def test_a_malformed_pod_cidr_is_refused_whatever_the_network(value: str, says: str) -> None:
    message = error_of("--pod-cidr", value, "--server", "127.0.0.1:7070", "--insecure")
    assert message.startswith("--pod-cidr") and says in message, (
        f"--pod-cidr {value} should be refused naming the flag and the problem, said: {message}"
    )


def test_a_pod_cidr_is_reported_in_its_canonical_form() -> None:
    config = parse("--pod-cidr", " 10.244.3.0/24 ", "--network", "cni")
    assert config.pod_cidr == "10.244.3.0/24"


def test_capacity_overrides_take_kubernetes_quantities() -> None:
    config = parse("--cpu", "1500m", "--memory", "4Gi", "--max-pods", "20")
    assert (config.cpu_millis, config.memory_bytes, config.max_pods) == (1500, 4 * 1024**3, 20)
    machine = parse()
    assert (machine.cpu_millis, machine.memory_bytes) == (None, None), (
        "without overrides the agent should report the machine's own capacity"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--memory", "12Zi"), "--memory"),
        (("--memory", "0"), "more than zero"),
        (("--cpu", "-1"), "more than zero"),
        (("--cpu", "two"), "--cpu"),
        (("--max-pods", "0"), "--max-pods"),
    ],
)
def test_bad_capacity_overrides_are_refused(argv: tuple[str, ...], says: str) -> None:
    message = error_of(*argv)
    assert says in message, f"{' '.join(argv)} should be refused saying {says!r}: {message}"


def test_node_facts_report_the_overrides_as_capacity_and_allocatable() -> None:
    facts = nodeinfo.gather(
        runtime_version="fake", max_pods=7, cpu_millis=2500, memory_bytes_override=4 * 1024**3
    )
    assert facts.capacity == {"cpu": "2500m", "memory": "4Gi", "pods": "7"}
    assert facts.allocatable == facts.capacity
    machine = nodeinfo.gather(runtime_version="fake", max_pods=110)
    assert machine.capacity["memory"] != "0" and machine.capacity["cpu"] != "0", (
        "without overrides the node should report the machine's memory and cpus"
    )

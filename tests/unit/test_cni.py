"""CniNetwork against recording fake plugins: the chain a pod goes through, without root.

The fake plugins log every call (command, CNI_* environment, stdin config) to calls.jsonl in
their directory; a file `fail-<plugin>-<COMMAND>` there makes that call fail like a real
plugin does (exit 1, an error object on stdout).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from nodeagent.network import cni
from nodeagent.network.cni import CniError, CniNetwork, PortMapping

FAKE_PLUGIN = f"""#!{sys.executable}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(__file__)
command = os.environ["CNI_COMMAND"]
config = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"plugin": name, "command": command, "env": env, "config": config}}))
    log.write("\\n")
if os.path.exists(os.path.join(here, f"fail-{{name}}-{{command}}")):
    print(json.dumps({{"cniVersion": "1.0.0", "code": 11, "msg": f"{{name}} broke",
                      "details": "as asked"}}))
    sys.exit(1)
if command == "ADD":
    if "prevResult" in config:
        result = dict(config["prevResult"])
        result["seenBy"] = result.get("seenBy", []) + [name]
    else:
        subnet = config["ipam"]["ranges"][0][0]["subnet"] if "ipam" in config else "10.0.0.0/24"
        base = subnet.rsplit(".", 1)[0]
        result = {{
            "cniVersion": "1.0.0",
            "interfaces": [
                {{"name": "ph0", "mac": "aa:aa:aa:aa:aa:01"}},
                {{"name": "veth1", "mac": "aa:aa:aa:aa:aa:02"}},
                {{"name": env["CNI_IFNAME"], "mac": "aa:aa:aa:aa:aa:03",
                  "sandbox": env["CNI_NETNS"]}},
            ],
            "ips": [{{"address": base + ".5/24", "gateway": base + ".1", "interface": 2}}],
            "seenBy": [name],
        }}
    print(json.dumps(result))
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    for name in ("bridge", "portmap", "loopback"):
        path = directory / name
        path.write_text(FAKE_PLUGIN)
        path.chmod(0o755)
    return directory


def calls(plugins: Path) -> list[dict[str, Any]]:
    log = plugins / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def chain_calls(plugins: Path) -> list[tuple[str, str]]:
    return [(c["plugin"], c["command"]) for c in calls(plugins) if c["plugin"] != "loopback"]


def network(plugins: Path, tmp_path: Path, cidr: str = "10.244.3.0/24") -> CniNetwork:
    return CniNetwork(plugins, cni.conflist(cidr), tmp_path / "cni-state")


def test_conflist_is_a_gateway_bridge_with_host_local_addresses_and_hostports() -> None:
    conf = cni.conflist("10.244.3.0/24", ipam_dir="/x/ipam")
    bridge, portmap = conf["plugins"]
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "pilothouse"
    assert bridge["type"] == "bridge" and bridge["bridge"] == "ph0" and bridge["isGateway"]
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert bridge["ipam"]["dataDir"] == "/x/ipam", "nodes sharing a machine would share leases"
    assert bridge["ipMasq"] is False, "pod traffic would be NATed (and routed beyond the cluster)"
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_conflist_refuses_a_cidr_with_host_bits() -> None:
    with pytest.raises(ValueError):
        cni.conflist("10.244.3.7/24")


def test_plugin_config_follows_the_spec_derivation() -> None:
    net = cni.conflist("10.244.3.0/24")
    ports = [PortMapping(8080, 80).capability()]
    portmap = cni.plugin_config(
        net,
        net["plugins"][1],
        capabilities={"portMappings": ports, "bandwidth": {"x": 1}},
        prev_result={"ips": []},
    )
    assert portmap["name"] == "pilothouse" and portmap["cniVersion"] == "1.0.0"
    assert "capabilities" not in portmap, "the spec says the runtime removes `capabilities`"
    assert portmap["runtimeConfig"] == {"portMappings": ports}, "only declared capabilities"
    assert portmap["prevResult"] == {"ips": []}
    bridge = cni.plugin_config(
        net, net["plugins"][0], capabilities={"portMappings": ports}, prev_result=None
    )
    assert "runtimeConfig" not in bridge and "prevResult" not in bridge


async def test_setup_runs_the_chain_in_order_with_prev_results(
    plugins: Path, tmp_path: Path
) -> None:
    net = network(plugins, tmp_path)
    pod = await net.setup("default_web-1", "/run/ns/web-1", [PortMapping(8080, 80)])
    assert pod == cni.PodNetwork(
        ip="10.244.3.5", gateway="10.244.3.1", interface="eth0", prefix_length=24
    )
    seen = calls(plugins)
    assert [(c["plugin"], c["command"]) for c in seen] == [
        ("loopback", "ADD"),
        ("bridge", "ADD"),
        ("portmap", "ADD"),
    ]
    loopback, bridge, portmap = seen
    assert loopback["env"]["CNI_IFNAME"] == "lo"
    assert bridge["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "default_web-1",
        "CNI_NETNS": "/run/ns/web-1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(plugins),
    }
    assert "prevResult" not in bridge["config"]
    assert portmap["config"]["prevResult"]["seenBy"] == ["bridge"]
    assert portmap["config"]["runtimeConfig"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }
    assert net.attached() == {"default_web-1": pod}


async def test_setup_twice_returns_the_same_address_without_calling_plugins(
    plugins: Path, tmp_path: Path
) -> None:
    net = network(plugins, tmp_path)
    first = await net.setup("p", "/run/ns/p")
    count = len(calls(plugins))
    assert await net.setup("p", "/run/ns/p") == first
    assert len(calls(plugins)) == count, "a retried pod start would re-run the plugins"


async def test_teardown_runs_del_in_reverse_with_the_final_result_and_is_idempotent(
    plugins: Path, tmp_path: Path
) -> None:
    net = network(plugins, tmp_path)
    await net.setup("p", "/run/ns/p", [PortMapping(8080, 80)])
    (plugins / "calls.jsonl").unlink()
    await net.teardown("p")
    dels = calls(plugins)
    assert [(c["plugin"], c["command"]) for c in dels] == [("portmap", "DEL"), ("bridge", "DEL")]
    assert all(c["config"]["prevResult"]["seenBy"] == ["bridge", "portmap"] for c in dels)
    assert dels[0]["config"]["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080, (
        "portmap could not remove the hostPort rules it made"
    )
    assert net.attached() == {}
    await net.teardown("p")
    assert len(calls(plugins)) == 2, "a second teardown must not call plugins again"


async def test_teardown_after_a_restart_uses_the_recorded_config(
    plugins: Path, tmp_path: Path
) -> None:
    await network(plugins, tmp_path, "10.244.3.0/24").setup("p", "/run/ns/p")
    (plugins / "calls.jsonl").unlink()
    restarted = network(plugins, tmp_path, "10.244.9.0/24")  # the node's config changed meanwhile
    assert restarted.attached()["p"].ip == "10.244.3.5"
    await restarted.teardown("p")
    bridge_del = next(c for c in calls(plugins) if c["plugin"] == "bridge")
    assert bridge_del["config"]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]], (
        "the old address would never be released"
    )


async def test_a_failed_add_is_undone_and_names_the_plugin(plugins: Path, tmp_path: Path) -> None:
    (plugins / "fail-portmap-ADD").touch()
    net = network(plugins, tmp_path)
    with pytest.raises(CniError, match=r"ADD of 'portmap' failed: portmap broke \(as asked\)"):
        await net.setup("p", "/run/ns/p", [PortMapping(8080, 80)])
    assert chain_calls(plugins) == [
        ("bridge", "ADD"),
        ("portmap", "ADD"),
        ("portmap", "DEL"),
        ("bridge", "DEL"),
    ], "the address the bridge plugin took would leak"
    assert net.attached() == {}


async def test_a_crash_during_add_leaves_a_record_that_teardown_releases(
    plugins: Path, tmp_path: Path
) -> None:
    net = network(plugins, tmp_path)
    record: dict[str, Any] = {
        "podId": "p",
        "containerId": "p",
        "netns": "/run/ns/p",
        "interface": "eth0",
        "conflist": net.conf,
        "portMappings": [],
        "result": None,
    }
    net._write("p", record)  # what setup writes before its first plugin runs
    assert net.attached() == {"p": None}
    await net.teardown("p")
    assert chain_calls(plugins) == [("bridge", "DEL")]  # no port mappings: no portmap
    assert all("prevResult" not in c["config"] for c in calls(plugins))
    assert net.attached() == {}


async def test_a_failed_del_still_runs_the_rest_and_keeps_the_record(
    plugins: Path, tmp_path: Path
) -> None:
    net = network(plugins, tmp_path)
    await net.setup("p", "/run/ns/p", [PortMapping(8080, 80)])
    (plugins / "calls.jsonl").unlink()
    (plugins / "fail-portmap-DEL").touch()
    with pytest.raises(CniError, match="portmap broke"):
        await net.teardown("p")
    assert chain_calls(plugins) == [("portmap", "DEL"), ("bridge", "DEL")]
    assert "p" in net.attached(), "a retried teardown would have nothing to release"
    (plugins / "fail-portmap-DEL").unlink()
    await net.teardown("p")
    assert net.attached() == {}


async def test_a_pod_without_port_mappings_runs_no_portmap(plugins: Path, tmp_path: Path) -> None:
    net = network(plugins, tmp_path)
    pod = await net.setup("p", "/run/ns/p")
    assert pod.ip, "the bridge's result is the attachment's result"
    await net.check("p")
    await net.teardown("p")
    assert [p for p, _ in chain_calls(plugins)] == ["bridge", "bridge", "bridge"]
    assert [c for _, c in chain_calls(plugins)] == ["ADD", "CHECK", "DEL"]


async def test_a_missing_plugin_says_what_to_install(tmp_path: Path) -> None:
    net = CniNetwork(tmp_path, cni.conflist("10.244.3.0/24"), tmp_path / "s", loopback=False)
    with pytest.raises(CniError, match="install containernetworking-plugins"):
        await net.setup("p", "/run/ns/p")


def test_pod_network_picks_the_address_of_the_pod_interface() -> None:
    result = {
        "interfaces": [
            {"name": "ph0"},
            {"name": "eth0", "sandbox": "/run/ns/p"},
        ],
        "ips": [
            {"address": "10.244.3.1/24", "interface": 0},
            {"address": "fd00::5/64", "interface": 1},
            {"address": "10.244.3.9/24", "gateway": "10.244.3.1", "interface": 1},
        ],
    }
    assert cni.pod_network(result, "eth0").ip == "10.244.3.9"
    with pytest.raises(CniError):
        cni.pod_network({"ips": []}, "eth0")


def test_unsafe_pod_ids_become_safe_container_ids() -> None:
    from nodeagent.network import netns

    assert netns.file_name("default/web-1") == "default_web-1"
    assert "/" not in netns.file_name("../../etc")
    assert os.sep not in netns.file_name("a/b")
    assert netns.file_name("..") not in (".", ".."), "a pod named '..' would escape the dir"

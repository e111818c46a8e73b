"""Pod networking through CNI plugins: attach a pod's network namespace, and detach it.

Vocabulary (CNI spec 1.0.0):
- conflist: a named chain of plugin configurations (bridge, then portmap, ...); `conflist`
  builds ours from a node's pod CIDR;
- attachment: one pod's namespace joined to the conflist's network, identified by the pod id
  (CNI_CONTAINERID) and the interface name inside the pod (CNI_IFNAME, "eth0");
- result: what ADD returns (interfaces, ips, routes); each plugin's result is the next one's
  `prevResult`, and the last one is the attachment's result.

Invariants:
- every attachment has a record in `<state-dir>/<pod>.json` from before its first plugin runs
  until its DEL succeeded: the conflist used, the namespace, the port mappings and the result.
  `teardown` works from that record alone, so an agent that crashed (or changed its config)
  mid-ADD or after it still releases the pod's address and its hostPort rules;
- `teardown` is idempotent: no record, nothing to do;
- a failed ADD is undone (DEL of the whole chain) before the error is raised, and the error
  carries the plugin's own message;
- a pod without port mappings skips the `portmap` plugin in ADD, CHECK and DEL alike (its
  record says so): with no mappings it only passes the previous result on, and each exec of
  a plugin is a process start on every pod's start path.

The loopback interface of the pod is brought up by the `loopback` plugin as its own
attachment, as container runtimes do; it owns no address and needs no DEL.

Plugins run as `exec_prefix + [plugin]` (`network.plugins` runs one): empty when the agent
already lives in the node's network namespace; `["ip", "netns", "exec", NS]` when the caller
is elsewhere (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from nodeagent.network import netns, plugins
from nodeagent.network.plugins import CniError, Command
from nodeagent.state.quarantine import read_json

log = structlog.get_logger(__name__)

__all__ = [
    "CNI_VERSION",
    "CniError",
    "CniNetwork",
    "Command",
    "PodNetwork",
    "PortMapping",
    "conflist",
    "plugin_config",
    "pod_network",
]

CNI_VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A hostPort: traffic to the node's `host_port` reaches the pod's `container_port`."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def capability(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """A pod's place on the node's network: its IP, its gateway and its interface."""

    ip: str
    gateway: str
    interface: str
    prefix_length: int = 0


def conflist(
    pod_cidr: str,
    *,
    name: str = "pilothouse",
    bridge: str = "ph0",
    ipam_dir: str | None = None,
    ip_masq: bool = False,
    port_map: bool = True,
    mtu: int | None = None,
) -> dict[str, Any]:
    """Our pod network: a gateway bridge, host-local addresses from `pod_cidr`, hostPorts.

    `ipam_dir` keeps host-local's leases apart when several nodes share one machine (its
    default, /var/lib/cni/networks, is machine-wide). `ip_masq` stays off by default: pods
    reach each other by pod IP without NAT, and nothing is routed beyond the cluster.
    `mtu`: the bridge's and the pods' (None: the plugin's default, the bridge's own).
    """
    network = ipaddress.ip_network(pod_cidr, strict=True)
    ipam: dict[str, Any] = {
        "type": "host-local",
        "ranges": [[{"subnet": str(network)}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    if ipam_dir:
        ipam["dataDir"] = ipam_dir
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge",
            "bridge": bridge,
            "isGateway": True,
            "ipMasq": ip_masq,
            "hairpinMode": True,
            "ipam": ipam,
        }
    ]
    if mtu is not None:
        plugins[0]["mtu"] = mtu
    if port_map:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {"cniVersion": CNI_VERSION, "name": name, "plugins": plugins}


def plugin_config(
    net: dict[str, Any],
    plugin: dict[str, Any],
    *,
    capabilities: dict[str, Any],
    prev_result: dict[str, Any] | None,
) -> dict[str, Any]:
    """The configuration one plugin of `net` gets on stdin (CNI spec, section 3)."""
    config = {k: v for k, v in plugin.items() if k != "capabilities"}
    config["cniVersion"] = net.get("cniVersion", CNI_VERSION)
    config["name"] = net["name"]
    declared = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in capabilities.items() if declared.get(k)}
    if runtime:
        config["runtimeConfig"] = runtime
    if prev_result is not None:
        config["prevResult"] = prev_result
    return config


def pod_network(result: dict[str, Any], interface: str) -> PodNetwork:
    """The pod's IPv4 address on `interface` from an ADD result."""
    interfaces = result.get("interfaces") or []
    chosen = None
    for ip in result.get("ips") or []:
        address = ipaddress.ip_interface(ip["address"])
        if address.version != 4:
            continue
        index = ip.get("interface")
        if index is not None and 0 <= index < len(interfaces):
            iface = interfaces[index]
            if not iface.get("sandbox") or iface.get("name") != interface:
                continue
        chosen = (address, ip.get("gateway", ""))
        break
    if chosen is None:
        raise CniError(
            f"no IPv4 address for {interface} in the result: {json.dumps(result)}",
            plugin="(chain)",
            command=Command.ADD,
        )
    address, gateway = chosen
    return PodNetwork(
        ip=str(address.ip),
        gateway=gateway,
        interface=interface,
        prefix_length=address.network.prefixlen,
    )


class CniNetwork:
    """Attach pods to one CNI network (a conflist) and detach them; records in `state_dir`.

    `conf` may be None while the network's configuration is not known yet (a node waiting for
    its pod CIDR): such a network detaches from records but attaches nothing until `conf` is set.
    """

    def __init__(
        self,
        plugin_dir: str | os.PathLike[str],
        conf: dict[str, Any] | None,
        state_dir: str | os.PathLike[str],
        *,
        interface: str = "eth0",
        exec_prefix: Sequence[str] = (),
        loopback: bool = True,
    ) -> None:
        if conf is not None and (not conf.get("name") or not conf.get("plugins")):
            raise ValueError("a CNI conflist needs a name and at least one plugin")
        self.plugin_dir = Path(plugin_dir)
        self.conf = conf
        self.state_dir = Path(state_dir)
        self.interface = interface
        self.exec_prefix = list(exec_prefix)
        self.loopback = loopback

    # -- the attachment lifecycle ------------------------------------------------------------

    async def setup(
        self,
        pod_id: str,
        netns_path: str,
        port_mappings: Sequence[PortMapping] = (),
    ) -> PodNetwork:
        """Attach the pod's namespace: ADD through the chain; return the pod's address.

        Setting up a pod that already has a result returns that result unchanged.
        """
        existing = self._read(pod_id)
        if existing and existing.get("result") and existing.get("netns") == netns_path:
            return pod_network(existing["result"], self.interface)
        if self.conf is None:
            raise CniError(
                "the network has no configuration yet", plugin="(chain)", command=Command.ADD
            )
        if existing:
            await self.teardown(pod_id)
        record: dict[str, Any] = {
            "podId": pod_id,
            "containerId": netns.file_name(pod_id),
            "netns": netns_path,
            "interface": self.interface,
            "conflist": self.conf,
            "portMappings": [asdict(p) for p in port_mappings],
            "result": None,
        }
        self._write(pod_id, record)
        try:
            if self.loopback and (self.plugin_dir / "loopback").exists():
                lo = {"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"}
                await self._invoke(Command.ADD, lo, record, ifname="lo")
            result = await self._run_chain(Command.ADD, record)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.teardown(pod_id))
            raise
        record["result"] = result
        self._write(pod_id, record)
        network = pod_network(result, self.interface)
        log.info("pod.network_attached", pod=pod_id, ip=network.ip, netns=netns_path)
        return network

    async def teardown(self, pod_id: str, netns_path: str | None = None) -> None:
        """Detach the pod: DEL through the chain in reverse (idempotent).

        Works from the record of the attachment; `netns_path` only overrides where the
        namespace is now (a namespace that is gone is fine: addresses are still released).
        """
        record = self._read(pod_id)
        if record is None:
            return
        if netns_path is not None:
            record["netns"] = netns_path
        if record["netns"] and not netns.is_namespace(record["netns"]):
            # The plugins skip interface removal for a namespace that no longer exists but
            # fail on a file that is not one (an unpinned leftover): point them at nothing.
            record["netns"] = str(Path(record["netns"]).with_name(".gone-" + record["containerId"]))
        await self._run_chain(Command.DEL, record)
        self._path(pod_id).unlink(missing_ok=True)
        log.info("pod.network_detached", pod=pod_id)

    async def check(self, pod_id: str) -> None:
        """CHECK the attachment against its recorded result; raises CniError when it drifted."""
        record = self._read(pod_id)
        if record is None or not record.get("result"):
            raise CniError("pod is not attached", plugin="(chain)", command=Command.CHECK)
        await self._run_chain(Command.CHECK, record)

    def attached(self) -> dict[str, PodNetwork | None]:
        """Every pod with a record, and its address (None while its ADD never finished)."""
        out: dict[str, PodNetwork | None] = {}
        if not self.state_dir.is_dir():
            return out
        for path in sorted(self.state_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(path.read_text())
                result = record.get("result")
                out[record["podId"]] = pod_network(result, record["interface"]) if result else None
        return out

    # -- plugin execution ----------------------------------------------------------------------

    async def _run_chain(self, command: Command, record: dict[str, Any]) -> dict[str, Any]:
        net = record["conflist"]
        capabilities: dict[str, Any] = {}
        if record["portMappings"]:
            capabilities["portMappings"] = [
                PortMapping(**p).capability() for p in record["portMappings"]
            ]
        plugins = [
            p for p in net["plugins"] if record["portMappings"] or p.get("type") != "portmap"
        ]
        if command is Command.ADD:
            prev: dict[str, Any] | None = None
            for plugin in plugins:
                config = plugin_config(net, plugin, capabilities=capabilities, prev_result=prev)
                prev = await self._invoke(command, config, record, ifname=record["interface"])
            assert prev is not None
            return prev
        errors: list[CniError] = []
        for plugin in reversed(plugins):
            config = plugin_config(
                net, plugin, capabilities=capabilities, prev_result=record.get("result")
            )
            try:
                await self._invoke(command, config, record, ifname=record["interface"])
            except CniError as error:
                if command is Command.CHECK:
                    raise
                errors.append(error)  # DEL goes on: release what can be released
        if errors:
            raise errors[0]
        return record.get("result") or {}

    async def _invoke(
        self, command: Command, config: dict[str, Any], record: dict[str, Any], *, ifname: str
    ) -> dict[str, Any]:
        return await plugins.invoke(
            command,
            config,
            plugin_dir=self.plugin_dir,
            exec_prefix=self.exec_prefix,
            container_id=record["containerId"],
            netns=record["netns"],
            ifname=ifname,
        )

    # -- records ---------------------------------------------------------------------------------

    def _path(self, pod_id: str) -> Path:
        return self.state_dir / f"{netns.file_name(pod_id)}.json"

    def _read(self, pod_id: str) -> dict[str, Any] | None:
        record = read_json(
            self._path(pod_id),
            instead="the attachment is forgotten (its address may stay reserved)",
        )
        return record if isinstance(record, dict) else None

    def _write(self, pod_id: str, record: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self._path(pod_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)

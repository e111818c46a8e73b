"""The parts of one local cluster, started in order and stopped in order (`LocalCluster`),
and what it serves where (`ClusterInfo`, kept in `cluster.json`).

Start, each part waiting for the one before to serve:
1. the registry (docker-registry), then the busybox test image pushed to it as
   `library/busybox:stable`, so `busybox:stable` resolves offline through the nodes' mirror;
2. the control plane (its embedded etcd under `<data-dir>/controlplane`);
3. the node hosts (`hosts.NodeNetwork`), then one agent per node, each with its own state
   dir, listen address, registries.yaml, cgroup parent, and `--server` when the agent has
   that flag (then `up` waits until every node is registered and Ready);
4. the CLI's config points at the control plane; `cluster.json` is written last, which is
   what a detached `up` waits for.
Every child binds port 0 on its first run; the address it got is then fixed in its argv (or
config), so a restarted child serves where the others already point.

Stop, in this order, for a reason each:
1. the control plane first, so nothing pushes pods to the agents any more;
2. each agent is drained: SyncPods with an empty set, so the agent itself stops its
   containers within their grace period and removes their mounts and cgroups (containers
   outlive agents by design, so stopping an agent alone would leave them running);
   a drain that takes longer than `DRAIN_TIMEOUT_S` is left to step 4;
3. the agents, then the registry, then the node hosts;
4. `cleanup.sweep` removes whatever is left (containers the drain did not finish, mounts,
   cgroups, the files `up` made), and the CLI's config forgets the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from pilothouse.cluster import cleanup, clientconfig, hosts, probes
from pilothouse.cluster import registry as local_registry
from pilothouse.cluster.layout import Layout
from pilothouse.cluster.supervisor import ChildSpec, Supervisor

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a running local cluster serves where; `cluster.json` holds it."""

    data_dir: str
    pid: int
    controlplane: str
    registry: str
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> agent address
    client_config: str = ""

    @classmethod
    def read(cls, layout: Layout) -> ClusterInfo | None:
        try:
            return cls(**json.loads(layout.cluster_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, layout: Layout) -> None:
        temporary = layout.cluster_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(layout.cluster_file)

    def describe(self) -> str:
        width = max(len("control plane"), *(len(n) for n in self.nodes))
        lines = [
            f"{'control plane':<{width}}  {self.controlplane}",
            f"{'registry':<{width}}  {self.registry} (mirror of docker.io)",
            *(f"{name:<{width}}  {address}" for name, address in self.nodes.items()),
        ]
        if self.client_config:
            lines.append(f"client config: {self.client_config} (server: {self.controlplane})")
        return "\n".join(lines)


class LocalCluster:
    """The parts of one running local cluster, started and stopped in order."""

    def __init__(self, layout: Layout, *, network: hosts.NodeNetwork, nodes: list[str]) -> None:
        self.layout = layout
        self.network = network
        self.node_names = nodes
        self.hosts: Sequence[hosts.NodeHost] = []
        self.supervisor = Supervisor(layout.pids)
        self.info: ClusterInfo | None = None
        self._agents: dict[str, str] = {}
        self._controlplane = ""
        self._registry = ""
        self._with_server = False
        self._client_config: Path | None = None

    async def start(self, *, client_config: Path) -> ClusterInfo:
        registry = await self._start_registry()
        await local_registry.push_test_image(self.layout.test_image, registry_address=registry)
        self._controlplane = await self._start_controlplane()
        agent_flags = await _agent_flags()
        self._registry = registry
        self._with_server = "--server" in agent_flags
        self.hosts = await asyncio.to_thread(
            self.network.create, self.layout.cluster_id, self.node_names
        )
        for host in self.hosts:
            await self._start_agent(host)
        for host in self.hosts:
            self._agents[host.name] = await self._agent_ready(host)
        if self._with_server:
            names = {h.name for h in self.hosts}

            async def registered() -> bool:
                return names <= await probes.ready_nodes(self._controlplane)

            await probes.wait_until(
                registered,
                what=f"nodes registered and Ready (logs: {self.layout.log('node-1').parent})",
                deadline_s=READY_TIMEOUT_S,
            )
        clientconfig.point_at(client_config, self._controlplane)
        self._client_config = client_config
        self.info = ClusterInfo(
            data_dir=str(self.layout.data_dir),
            pid=os.getpid(),
            controlplane=self._controlplane,
            registry=registry,
            nodes=dict(self._agents),
            client_config=str(client_config),
        )
        self.info.write(self.layout)
        log.info("cluster.ready", controlplane=self._controlplane, nodes=len(self._agents))
        return self.info

    async def _start_registry(self) -> str:
        log_path = self.layout.log("registry")
        offset = log_path.stat().st_size if log_path.exists() else 0
        spec = local_registry.child(
            self.layout.registry, listen=f"{self.network.service_host}:0", log_path=log_path
        )
        await self.supervisor.start(spec)
        address = ""

        async def listening() -> bool:
            nonlocal address
            address = local_registry.bound_address(log_path, offset=offset) or ""
            return bool(address) and await probes.registry_serves(address)

        await probes.wait_until(
            listening,
            what=f"the registry (log: {log_path})",
            deadline_s=READY_TIMEOUT_S,
            alive=lambda: self.supervisor.pid("registry") is not None,
        )
        local_registry.write_config(self.layout.registry, listen=address)  # keep it on restarts
        return address

    async def _start_controlplane(self) -> str:
        directory = self.layout.controlplane
        directory.mkdir(parents=True, exist_ok=True)
        address_file = directory / "controlplane.addr"
        with contextlib.suppress(FileNotFoundError):
            address_file.unlink()
        argv = [sys.executable, "-m", "controlplane", "--data-dir", str(directory)]
        log_path = self.layout.log("controlplane")
        await self.supervisor.start(
            ChildSpec(
                name="controlplane",
                argv=(*argv, "--listen", f"{self.network.service_host}:0"),
                log_path=log_path,
                stop_timeout=20.0,
            )
        )
        address = await _address_from(
            address_file,
            what=f"the control plane (log: {log_path})",
            alive=lambda: self.supervisor.pid("controlplane") is not None,
        )
        self.supervisor.update("controlplane", argv=[*argv, "--listen", address])

        async def serves() -> bool:
            return await probes.controlplane_serves(address)

        await probes.wait_until(serves, what="the control plane API", deadline_s=READY_TIMEOUT_S)
        return address

    def _agent_argv(
        self, host: hosts.NodeHost, *, registry: str, listen: str, server: bool
    ) -> list[str]:
        state = self.layout.node(host.name)
        mirrors = local_registry.write_mirrors(
            state / "registries.yaml", registry_address=host.reach(registry)
        )
        argv = [
            sys.executable,
            "-m",
            "nodeagent",
            "--name",
            host.name,
            "--listen",
            listen,
            "--state-dir",
            str(state),
            "--registries",
            str(mirrors),
            "--cgroup-parent",
            self.layout.node_cgroup_parent(host.name),
            "--node-ip",
            host.address,
        ]
        if server:
            argv += ["--server", host.reach(self._controlplane)]
        return host.command(argv)

    async def _start_agent(self, host: hosts.NodeHost) -> None:
        state = self.layout.node(host.name)
        state.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (state / "agent.addr").unlink()
        argv = self._agent_argv(
            host, registry=self._registry, listen=f"{host.address}:0", server=self._with_server
        )
        await self.supervisor.start(
            ChildSpec(
                name=host.name,
                argv=tuple(argv),
                log_path=self.layout.log(host.name),
                stop_timeout=15.0,
            )
        )

    async def _agent_ready(self, host: hosts.NodeHost) -> str:
        log_path = self.layout.log(host.name)
        address = await _address_from(
            self.layout.node(host.name) / "agent.addr",
            what=f"agent {host.name} (log: {log_path})",
            alive=lambda: self.supervisor.pid(host.name) is not None,
        )
        argv = self._agent_argv(
            host, registry=self._registry, listen=address, server=self._with_server
        )
        self.supervisor.update(host.name, argv=argv)

        async def serves() -> bool:
            return await probes.agent_serves(address, name=host.name)

        await probes.wait_until(serves, what=f"agent {host.name}", deadline_s=READY_TIMEOUT_S)
        return address

    async def shutdown(self) -> None:
        """Stop everything in order and remove what `up` made (see the module docstring)."""
        log.info("cluster.stopping", data_dir=str(self.layout.data_dir))
        await self.supervisor.stop("controlplane")
        drains = [
            probes.drain(address, state_dir=self.layout.node(name), deadline_s=DRAIN_TIMEOUT_S)
            for name, address in self._agents.items()
            if self.supervisor.pid(name) is not None
        ]
        drained = await asyncio.gather(*drains)
        if not all(drained):
            log.warning("cluster.drain_incomplete", nodes=len(drains), drained=sum(drained))
        await self.supervisor.stop_all()
        await asyncio.to_thread(self.network.destroy, self.layout.cluster_id)
        left = await asyncio.to_thread(cleanup.sweep, self.layout)
        if self._client_config is not None:
            clientconfig.forget(self._client_config, self._controlplane)
        log.info("cluster.stopped", data_dir=str(self.layout.data_dir), leftovers=bool(left))


async def _address_from(file: Path, *, what: str, alive: Callable[[], bool]) -> str:
    """Wait for a process to write its bound address ("HOST:PORT") to `file`."""
    address = ""

    async def written() -> bool:
        nonlocal address
        with contextlib.suppress(OSError):
            address = (await asyncio.to_thread(file.read_text)).strip()
        return bool(address)

    await probes.wait_until(written, what=what, deadline_s=READY_TIMEOUT_S, alive=alive)
    return address


async def _agent_flags() -> set[str]:
    """The agent flags this build has that `up` uses when present ("--server": it registers
    its node with the control plane and heartbeats)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nodeagent",
        "--help",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    text, _ = await proc.communicate()
    words = set(text.decode(errors="replace").replace(",", " ").split())
    return {flag for flag in ("--server",) if flag in words}

"""`pilothouse up` and `pilothouse down`: a whole cluster on this machine, with one command.

`up` starts, in this order, each part waiting for the one before to serve:
1. the registry (docker-registry on loopback), then pushes the busybox test image to it as
   `library/busybox:stable`, so `busybox:stable` resolves offline through the nodes' mirror;
2. the control plane (its embedded etcd under `<data-dir>/controlplane`);
3. N agents, node-1 … node-N, each with its own state dir, listen address, registries.yaml,
   cgroup parent, and `--server` when the agent has that flag.
Then it points the CLI's config at the control plane, writes `cluster.json` (which is what a
detached `up` waits for) and supervises everything until SIGINT or SIGTERM.

Stopping (Ctrl-C, SIGTERM, `down`) goes in this order, for a reason each:
1. the control plane first, so nothing pushes pods to the agents any more;
2. each agent is drained: SyncPods with an empty set, so the agent itself stops its
   containers within their grace period and removes their mounts and cgroups (containers
   outlive agents by design, so stopping an agent alone would leave them running);
3. the agents, then the registry;
4. `cleanup.sweep` removes whatever is left (containers the drain did not finish, mounts,
   cgroups, the files `up` made), and the CLI config forgets the server.
After a crash of the supervisor, `down` does 3 and 4 from the pid files and the data dir.

Invariants: one cluster per data dir (`up.pid` names its supervisor); `down` is idempotent
and exits 0 when nothing runs; `up` on the data dir of a crashed cluster first cleans it up
as `down` would. A `up` (foreground or detached) leaves no process behind when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import structlog

from pilothouse.cluster import cleanup, clientconfig, hosts, probes, processes
from pilothouse.cluster import registry as local_registry
from pilothouse.cluster.layout import Layout
from pilothouse.cluster.supervisor import ChildSpec, Supervisor

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 90.0


class ClusterError(RuntimeError):
    """`up` or `down` cannot do what was asked; the message says why and what to do."""


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


def running(layout: Layout) -> processes.ProcessRecord | None:
    """The supervisor of the cluster in this data dir, if one runs."""
    record = processes.read(layout.up_pid)
    return record if record is not None and record.alive() else None


# --- up --------------------------------------------------------------------------------------


async def up(
    *,
    nodes: int = 1,
    data_dir: Path | None = None,
    detach: bool = False,
    client_config: Path | None = None,
    network: hosts.NodeNetwork | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Start a local cluster; in the foreground until signalled, else until it is ready.

    `network` places the nodes (default: all on the machine's network); a detached `up`
    re-executes itself with the default.
    """
    if nodes < 1:
        raise ClusterError(f"--nodes must be at least 1, got {nodes}")
    layout = Layout.at(data_dir)
    if (record := running(layout)) is not None:
        raise ClusterError(
            f"a local cluster already runs from {layout.data_dir} (pid {record.pid}); "
            f"stop it with `pilothouse down --data-dir {layout.data_dir}`"
        )
    config_file = clientconfig.path(client_config)
    if detach:
        return await _detach(layout, nodes=nodes, client_config=config_file, out=out)
    return await _foreground(
        layout,
        nodes=nodes,
        client_config=config_file,
        network=network or hosts.SharedNetwork(),
        out=out,
    )


async def _detach(layout: Layout, *, nodes: int, client_config: Path, out: TextIO) -> int:
    """Run `up` in a new session of its own and return once the cluster is ready."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        layout.cluster_file.unlink()
    argv = [
        sys.executable,
        "-m",
        "pilothouse.cluster",
        "up",
        "--nodes",
        str(nodes),
        "--data-dir",
        str(layout.data_dir),
        "--client-config",
        str(client_config),
    ]
    offset = layout.up_log.stat().st_size if layout.up_log.exists() else 0
    with layout.up_log.open("ab") as output:
        # Not an asyncio subprocess: it must outlive this event loop and this process.
        child = subprocess.Popen(  # noqa: ASYNC220
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S + 30
    while True:
        info = ClusterInfo.read(layout)
        if info is not None and info.pid == child.pid:
            out.write(f"local cluster running in the background (pid {child.pid})\n")
            out.write(info.describe() + "\n")
            out.write(f"stop it with: pilothouse down --data-dir {layout.data_dir}\n")
            return 0
        if child.poll() is not None:
            raise ClusterError(
                f"the cluster failed to start (exit code {child.returncode}); "
                f"its log is {layout.up_log}:\n{_tail(layout.up_log, offset)}"
            )
        if loop.time() > deadline:
            child.send_signal(signal.SIGTERM)
            raise ClusterError(
                f"the cluster was not ready within {READY_TIMEOUT_S + 30:.0f} s and was "
                f"stopped; its log is {layout.up_log}:\n{_tail(layout.up_log, offset)}"
            )
        await asyncio.sleep(0.1)


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


async def _foreground(
    layout: Layout,
    *,
    nodes: int,
    client_config: Path,
    network: hosts.NodeNetwork,
    out: TextIO,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A crashed cluster's leftovers would hold ports, mounts and state: clear them first.
    if any(p.exists() for p in layout.made()):
        await asyncio.to_thread(_clean_after_crash, layout, network)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    processes.write(layout.up_pid, os.getpid())
    cluster = LocalCluster(layout, network=network, nodes=hosts.node_names(nodes))
    try:
        starting = asyncio.create_task(cluster.start(client_config=client_config))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stopped.cancel()
        info = starting.result()
        out.write(info.describe() + "\nCtrl-C stops the cluster and removes what it made.\n")
        out.flush()
        await stop.wait()
        return 0
    finally:
        # The handlers stay during shutdown: a second Ctrl-C must not cut the clean-up short.
        try:
            await cluster.shutdown()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


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


# --- down ------------------------------------------------------------------------------------


def _clean_after_crash(layout: Layout, network: hosts.NodeNetwork) -> cleanup.Leftovers:
    """End the children of a dead supervisor by their pid files, then sweep."""
    records = [processes.read(p) for p in sorted(layout.pids.glob("*.pid"))]
    processes.end([r for r in records if r is not None], timeout=10)
    info = ClusterInfo.read(layout)
    network.destroy(layout.cluster_id)
    left = cleanup.sweep(layout)
    if info is not None and info.client_config:
        clientconfig.forget(Path(info.client_config), info.controlplane)
    return left


async def down(
    *,
    data_dir: Path | None = None,
    network: hosts.NodeNetwork | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Stop the local cluster in `data_dir` and remove what it made; 0 also if none runs."""
    layout = Layout.at(data_dir)
    supervisor = running(layout)
    if supervisor is not None:
        os.kill(supervisor.pid, signal.SIGTERM)  # the supervisor alone: it stops the rest

        async def gone() -> bool:
            return not supervisor.alive()

        with contextlib.suppress(probes.NotReady):
            await probes.wait_until(gone, what="the supervisor", deadline_s=STOP_TIMEOUT_S)
        if supervisor.alive():
            log.warning("cluster.supervisor_killed", pid=supervisor.pid)
            processes.kill([supervisor])
    made = [p for p in layout.made() if p.exists()]
    left = await asyncio.to_thread(_clean_after_crash, layout, network or hosts.SharedNetwork())
    if left:
        raise ClusterError(f"could not remove everything in {layout.data_dir}: {left.describe()}")
    if supervisor is not None:
        out.write(f"local cluster in {layout.data_dir} stopped and removed\n")
    elif made:
        out.write(f"removed what a stopped cluster left in {layout.data_dir}\n")
    else:
        out.write(f"no local cluster runs from {layout.data_dir}\n")
    return 0

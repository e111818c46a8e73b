"""The parts of one local cluster, started in order and stopped in order (`LocalCluster`).

Start, each part waiting for the one before to serve:
1. the node hosts (`hosts.NodeNetwork`): with network namespaces, the cluster's bridge gives
   the machine the address every node reaches (`service_host`), so it comes first;
2. the registry (docker-registry) on `service_host`, then the busybox test image pushed to it
   as `library/busybox:stable`, so `busybox:stable` resolves offline through the nodes' mirror;
3. the control plane on `service_host` (its embedded etcd under `<data-dir>/controlplane`,
   etcd's data dir on a file system of its own, `volumes`, so pods filling the disk cannot
   take etcd's space):
   secure (mutual TLS) when this build's control plane and agents support it, then a join
   token is made with the admin's credentials; else `--insecure` plaintext. With
   `control_planes` > 1, that many members instead, each on a host of its own with its etcd
   member (`controlplanes`), and agents and the CLI get all their addresses;
4. one agent per node on its host (`agents`), each with its own state dir, listen address,
   registries.yaml, cgroup parent, pod network (CNI from the host's pod CIDR), and `--server`
   (and the join flags when secure). With pod CIDRs, agents start one after the other, each
   once the one before has registered: the control plane allocates pod CIDRs in registration
   order, so node i gets the CIDR its host routes (checked once all are Ready);
5. the CLI's config points at the control plane (with the admin's credentials when secure);
   `cluster.json` is written last, which is what a detached `up` waits for.
Every child binds port 0 on its first run; the address it got is then fixed in its argv (or
config), so a restarted child serves where the others already point.

Stop, in this order, for a reason each:
1. the control plane first, so nothing pushes pods to the agents any more;
2. each agent is drained: SyncPods with an empty set, so the agent itself stops its
   containers within their grace period and removes their mounts and cgroups (containers
   outlive agents by design, so stopping an agent alone would leave them running);
   a drain that takes longer than `DRAIN_TIMEOUT_S` is left to step 4;
3. the agents, then the registry, then the node hosts (namespaces, bridge, veths);
4. `cleanup.sweep` removes whatever is left (containers the drain did not finish, mounts,
   cgroups, the files `up` made), and the CLI's config forgets the server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from pilothouse import pki
from pilothouse.cli.cluster import (
    agents,
    cleanup,
    clientconfig,
    controlplanes,
    hollow,
    hosts,
    probes,
    volumes,
)
from pilothouse.cli.cluster import registry as local_registry
from pilothouse.cli.cluster.info import ClusterInfo
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.probes import READY_TIMEOUT_S
from pilothouse.cli.cluster.security import ClusterCredentials, create_join_token
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor
from pilothouse.credentials import TlsMaterial
from pilothouse.process import addressfile

log = structlog.get_logger(__name__)

DRAIN_TIMEOUT_S = 10.0

__all__ = ["DRAIN_TIMEOUT_S", "READY_TIMEOUT_S", "ClusterInfo", "LocalCluster"]


class ClusterStartError(RuntimeError):
    """The cluster came up, but not as it must be (e.g. a node's pod CIDR differs)."""


class LocalCluster:
    """The parts of one running local cluster, started and stopped in order."""

    def __init__(
        self,
        layout: Layout,
        *,
        network: hosts.NodeNetwork,
        nodes: list[str],
        placement: hosts.Placement = hosts.Placement.HOST,
        control_planes: int = 1,
        hollow_nodes: int = 0,
        controlplane_flags: Sequence[str] = (),  # given by whoever runs `up`
    ) -> None:
        self.layout = layout
        self.hollow_nodes = hollow_nodes  # simulated nodes of one `pilothouse hollow` child
        self.network = network
        self.placement = placement
        self.control_planes = control_planes
        self.members: controlplanes.ControlPlanes | None = None  # with control_planes > 1
        self.node_names = nodes
        self.hosts: Sequence[hosts.NodeHost] = []
        self.supervisor = Supervisor(layout.pids)
        self.info: ClusterInfo | None = None
        self.credentials: ClusterCredentials | None = None
        self._agents: dict[str, str] = {}
        self._controlplane = ""
        self._join = ""
        self._registry = ""
        self._agent_flags: frozenset[str] = frozenset()
        self._client_config: Path | None = None
        self._client_settings: dict[str, str] = {}
        self._controlplane_extra = list(controlplane_flags)  # flags every member gets
        self._dashboard = ""  # its URL, when the control plane serves one
        self._controlplane_children = ["controlplane"]  # stopped first (one member: its name)

    @classmethod
    def resumed(cls, layout: Layout, info: ClusterInfo, supervisor: Supervisor) -> LocalCluster:
        """The cluster `info` describes, with the runs `supervisor` adopted: what stopping it
        needs, in a process other than the one that started it (the keeper's `finish`)."""
        placement = hosts.Placement(info.network)
        cluster = cls(layout, network=hosts.network_for(placement), nodes=list(info.nodes))
        cluster.placement, cluster.info, cluster.supervisor = placement, info, supervisor
        cluster._agents, cluster._controlplane = dict(info.nodes), info.controlplane
        cluster._client_config = Path(info.client_config) if info.client_config else None
        cluster._client_settings = dict(info.client_settings)
        cluster._controlplane_children = list(info.controlplanes) or ["controlplane"]
        if info.secure:
            first = cluster._controlplane_children[0]
            home = layout.controlplane_member(first) if info.controlplanes else layout.controlplane
            cluster.credentials = ClusterCredentials.load(home)
        return cluster

    @property
    def admin_tls(self) -> TlsMaterial | None:
        """How `up` calls the control plane (None: plaintext)."""
        return self.credentials.admin if self.credentials else None

    @property
    def agent_tls(self) -> TlsMaterial | None:
        """How `up` calls agents (None: plaintext)."""
        return self.credentials.controlplane_client if self.credentials else None

    async def start(self, *, client_config: Path) -> ClusterInfo:
        self.hosts = await asyncio.to_thread(
            self.network.create, self.layout.cluster_id, self.node_names
        )
        registry = await local_registry.start(
            self.supervisor,
            self.layout.registry,
            listen=f"{self.network.service_host}:0",
            log_path=self.layout.log("registry"),
        )
        # Every push, pull and delete needs the registry's account: the test image's push, the
        # nodes' and the control plane's registries.yaml, and the CLI's (registry_config).
        account = local_registry.credentials(self.layout.registry)
        await local_registry.push_test_image(
            self.layout.test_image, registry_address=registry, account=account
        )
        registry_config = local_registry.write_mirrors(
            self.layout.registry / "registries.yaml", registry_address=registry, account=account
        )
        self._registry = registry
        self._agent_flags = frozenset(await probes.shown_flags("nodeagent", agents.AGENT_FLAGS))
        controlplane_flags = await probes.shown_flags(
            "controlplane", ("--insecure", "--local-path-dir")
        )
        # Volumes of the local-path class in the data dir, so `down` removes them too.
        self._controlplane_extra += (
            ["--local-path-dir", str(self.layout.storage)]
            if "--local-path-dir" in controlplane_flags
            else []
        )
        self._controlplane_extra += hollow.controlplane_flags(
            nodes=len(self.node_names),
            hollow_nodes=self.hollow_nodes,
            control_planes=self.control_planes,
        )
        # Secure by default when both sides can; a control plane that is secure by default
        # but agents that cannot join yet: plaintext on purpose.
        secure = "--insecure" in controlplane_flags and self._agent_flags >= agents.JOIN_FLAGS
        if self.control_planes > 1:
            self._controlplane = await self._start_controlplanes(secure=secure)
        else:
            self._controlplane = await self._start_controlplane(
                secure=secure, insecure_flag="--insecure" in controlplane_flags
            )
        if secure:
            self.credentials = (
                self.members.credentials()
                if self.members
                else ClusterCredentials.load(self.layout.controlplane)
            )
            self._client_settings = self.credentials.client_settings()
            first = self.members.first.listen if self.members else self._controlplane
            # One short-lived, single-use token per node, good for that node's name only, in
            # a 0600 file of its state dir (never on a command line); removed once it is Ready.
            for host in self.hosts:
                token = await create_join_token(first, self.credentials.admin, node=host.name)
                pki.write_secret(agents.token_file(self.layout, host), token.encode() + b"\n")
        launcher = agents.AgentLauncher(
            layout=self.layout,
            supervisor=self.supervisor,
            flags=self._agent_flags,
            registry=self._registry,
            controlplane=self._controlplane,
            join=self._join,
            credentials=self.credentials,
        )
        with_server = "--server" in self._agent_flags
        in_order = with_server and any(h.pod_cidr for h in self.hosts)
        for host in self.hosts:
            await launcher.start(host)
            if in_order:
                self._agents[host.name] = await launcher.ready(host)
                await self._wait_nodes({host.name}, ready=False)
        for host in self.hosts:
            if host.name not in self._agents:
                self._agents[host.name] = await launcher.ready(host)
        if with_server:
            await self._wait_nodes({h.name for h in self.hosts}, ready=True)
            for host in self.hosts:  # spent: each node holds its certificate now
                agents.token_file(self.layout, host).unlink(missing_ok=True)
            await self._check_pod_cidrs()
        if self.hollow_nodes:
            await hollow.start(
                self.supervisor,
                self.layout,
                count=self.hollow_nodes,
                server=self._controlplane,
                join_server=self._join,
                secured=self.credentials,
                node_ip=self.network.service_host,
            )
        clientconfig.point_at(client_config, self._controlplane, self._client_settings)
        self._client_config = client_config
        self.info = ClusterInfo(
            data_dir=str(self.layout.data_dir),
            pid=os.getpid(),
            controlplane=self._controlplane,
            registry=registry,
            registry_config=str(registry_config),
            nodes=dict(self._agents),
            client_config=str(client_config),
            network=self.placement.value,
            pod_cidrs={h.name: h.pod_cidr for h in self.hosts if h.pod_cidr},
            secure=secure,
            client_settings=dict(self._client_settings),
            controlplanes={m.name: m.listen for m in self.members.members} if self.members else {},
            dashboard=self._dashboard,
        )
        self.info.write(self.layout)
        log.info(
            "cluster.ready",
            controlplane=self._controlplane,
            nodes=len(self._agents),
            network=self.placement.value,
            secure=secure,
        )
        return self.info

    async def _wait_nodes(self, names: set[str], *, ready: bool) -> None:
        """Until every node in `names` is registered (and Ready, with `ready`)."""
        tls = self.admin_tls

        async def there() -> bool:
            if ready:
                return names <= await probes.ready_nodes(self._controlplane, tls=tls)
            return names <= set(await probes.registered_nodes(self._controlplane, tls=tls))

        which = ", ".join(sorted(names))
        await probes.wait_until(
            there,
            what=f"node {which} {'Ready' if ready else 'registered'} "
            f"(logs: {self.layout.log('node-1').parent})",
            deadline_s=READY_TIMEOUT_S,
        )

    async def _check_pod_cidrs(self) -> None:
        """Each Node's pod CIDR (the control plane's) is the one its host routes."""
        wanted = {h.name: h.pod_cidr for h in self.hosts if h.pod_cidr}
        if not wanted:
            return
        stored = await probes.registered_nodes(self._controlplane, tls=self.admin_tls)
        wrong = {n: (c, stored.get(n, "")) for n, c in wanted.items() if stored.get(n) != c}
        if wrong:
            raise ClusterStartError(
                "the control plane gave nodes other pod CIDRs than their hosts route: "
                + "; ".join(f"{n}: {got or 'none'}, not {c}" for n, (c, got) in wrong.items())
            )

    async def _start_controlplanes(self, *, secure: bool) -> str:
        placed = await asyncio.to_thread(
            self.network.create_controlplanes,
            self.layout.cluster_id,
            controlplanes.names(self.control_planes),
        )
        self.members = controlplanes.ControlPlanes(
            self.layout,
            self.supervisor,
            controlplanes.plan(self.layout, placed),
            registry=self._registry,
            insecure=not secure,
            flags=self._controlplane_extra,
        )
        address = await self.members.start()
        self._join = self.members.join_addresses
        return address

    async def _start_controlplane(self, *, secure: bool, insecure_flag: bool) -> str:
        directory = self.layout.controlplane
        directory.mkdir(parents=True, exist_ok=True)
        # The control plane's embedded etcd keeps its data in <data-dir>/etcd.
        etcd_dir = directory / "etcd"
        try:
            await asyncio.to_thread(
                volumes.ensure, image=directory / "etcd.img", mount_point=etcd_dir
            )
        except volumes.VolumeError as error:
            log.warning(
                "cluster.etcd_volume_failed",
                error=str(error),
                note="etcd shares the disk with the pods: a pod filling it stops etcd",
            )
        address_file = directory / "controlplane.addr"
        join_file = directory / "join.addr"
        addressfile.remove(address_file, join_file)  # stale ones from an earlier run
        # The same mirrors as the nodes', so new revisions pin `busybox:stable` to its digest.
        mirrors = local_registry.write_mirrors(
            directory / "registries.yaml",
            registry_address=self._registry,
            account=local_registry.credentials(self.layout.registry),
        )
        argv = [sys.executable, "-m", "controlplane", "--data-dir", str(directory)]
        argv += ["--registries", str(mirrors), *self._controlplane_extra]
        if insecure_flag and not secure:
            argv.append("--insecure")
        operate = await probes.shown_flags(
            "controlplane", ("--dashboard-listen", "--metrics-listen")
        )
        if operate:  # the web dashboard and Prometheus metrics on the control plane's address
            host = self.network.service_host
            argv += ["--dashboard-listen", f"{host}:0"]
            argv += ["--metrics-listen", f"{host}:{hosts.free_port(host)}"]
            addressfile.remove(directory / "dashboard.url")
        log_path = self.layout.log("controlplane")
        await self.supervisor.start(
            ChildSpec(
                name="controlplane",
                argv=(*argv, "--listen", f"{self.network.service_host}:0"),
                log_path=log_path,
                stop_timeout=20.0,
            )
        )

        def alive() -> bool:
            return self.supervisor.pid("controlplane") is not None

        what = f"the control plane (log: {log_path})"
        address = await probes.address_from(address_file, what=what, alive=alive)
        kept = [*argv, "--listen", address]
        if secure:
            self._join = await probes.address_from(join_file, what=what, alive=alive)
            kept += ["--join-listen", self._join]
        self.supervisor.update("controlplane", argv=kept)
        tls = ClusterCredentials.load(directory).admin if secure else None

        async def serves() -> bool:
            return await probes.controlplane_serves(address, tls=tls)

        await probes.wait_until(serves, what="the control plane API", deadline_s=READY_TIMEOUT_S)
        if operate:
            dashboard = directory / "dashboard.url"
            self._dashboard = await probes.address_from(dashboard, what=what, alive=alive)
        return address

    async def shutdown(self) -> None:
        """Stop everything in order and remove what `up` made (see the module docstring)."""
        log.info("cluster.stopping", data_dir=str(self.layout.data_dir))
        if self.members is not None:
            await self.members.stop()
        else:
            await asyncio.gather(*(self.supervisor.stop(n) for n in self._controlplane_children))
        drains = [
            probes.drain(
                address,
                name=name,
                state_dir=self.layout.node(name),
                deadline_s=DRAIN_TIMEOUT_S,
                tls=self.agent_tls,
            )
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
            clientconfig.forget(self._client_config, self._controlplane, self._client_settings)
        log.info("cluster.stopped", data_dir=str(self.layout.data_dir), leftovers=bool(left))

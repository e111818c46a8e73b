"""The node agents of one local cluster: each one's command line, its start under the
supervisor, and the wait until it serves (`AgentLauncher`, used by `parts.LocalCluster`).

Invariants:
- each agent has its own state dir, listen address, registries.yaml, cgroup parent and pod
  network (CNI from its host's pod CIDR), and `--server` (and the join flags when secure);
- an agent binds port 0 on its first run; once it serves, the address it got is fixed in its
  argv, so a restarted agent serves where the control plane already points;
- the join token is read from a 0600 file of the node's state dir (`token_file`), never
  passed on a command line, which every user can read;
- only the flags this build's agent shows in its `--help` are passed (`AGENT_FLAGS`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pilothouse.cli.cluster import hosts, probes
from pilothouse.cli.cluster import registry as local_registry
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.security import ClusterCredentials
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor
from pilothouse.process import addressfile

# Agent flags `up` uses when this build has them: registration, pod network, secure join.
AGENT_FLAGS = (
    "--server",
    "--network",
    "--token-file",
    "--ca-cert-hash",
    "--join-server",
    "--resolv-conf",
)
JOIN_FLAGS = frozenset({"--token-file", "--ca-cert-hash"})

NODE_RESOLV_CONF = """\
# The resolvers of this node of a local cluster (the agent's --resolv-conf): none, since
# nothing outside the cluster is routed from its namespace. The node's DNS answers cluster
# names and SERVFAIL for others; add a `nameserver ADDRESS` line the node can reach to
# forward them (the agent reads this file again when it changes).
"""


def node_resolv_conf(state: Path) -> Path:
    """The node's resolv.conf (made once; a person's edits are kept)."""
    path = state / "resolv.conf"
    if not path.exists():
        path.write_text(NODE_RESOLV_CONF)
    return path


def token_file(layout: Layout, host: hosts.NodeHost) -> Path:
    """Where the node's single-use join token waits for its agent (removed once it is Ready)."""
    return layout.node(host.name) / "join-token"


@dataclass(frozen=True)
class AgentLauncher:
    """Starts the agents of one cluster once the control plane serves: `flags` are the
    AGENT_FLAGS this build has, `registry`/`controlplane`/`join` the addresses they reach
    (several control-plane members: comma-separated), `credentials` None when plaintext."""

    layout: Layout
    supervisor: Supervisor
    flags: frozenset[str]
    registry: str
    controlplane: str
    join: str = ""
    credentials: ClusterCredentials | None = None

    def argv(self, host: hosts.NodeHost, *, listen: str) -> list[str]:
        state = self.layout.node(host.name)
        mirrors = local_registry.write_mirrors(
            state / "registries.yaml",
            registry_address=host.reach(self.registry),
            account=local_registry.credentials(self.layout.registry),
        )
        flags = self.flags
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
        if host.pod_cidr and "--network" in flags:
            argv += ["--network", "cni", "--pod-cidr", host.pod_cidr]
            if "--resolv-conf" in flags:
                argv += ["--resolv-conf", str(node_resolv_conf(state))]
        if "--server" in flags:
            argv += ["--server", _reach(host, self.controlplane)]
        if self.credentials is not None:
            if "--join-server" in flags:
                argv += ["--join-server", _reach(host, self.join)]
            # The agent refuses a token on its command line (every user can read those).
            argv += ["--token-file", str(token_file(self.layout, host))]
            argv += ["--ca-cert-hash", self.credentials.ca_cert_hash]
        return host.command(argv)

    async def start(self, host: hosts.NodeHost) -> None:
        state = self.layout.node(host.name)
        state.mkdir(parents=True, exist_ok=True)
        addressfile.remove(state / "agent.addr")
        argv = self.argv(host, listen=f"{host.address}:0")
        await self.supervisor.start(
            ChildSpec(
                name=host.name,
                argv=tuple(argv),
                log_path=self.layout.log(host.name),
                stop_timeout=15.0,
            )
        )

    async def ready(self, host: hosts.NodeHost) -> str:
        """Once the agent serves: its address, now fixed in its argv for restarts."""
        log_path = self.layout.log(host.name)
        address = await probes.address_from(
            self.layout.node(host.name) / "agent.addr",
            what=f"agent {host.name} (log: {log_path})",
            alive=lambda: self.supervisor.pid(host.name) is not None,
        )
        self.supervisor.update(host.name, argv=self.argv(host, listen=address))
        tls = self.credentials.controlplane_client if self.credentials else None

        async def serves() -> bool:
            return await probes.agent_serves(address, name=host.name, tls=tls)

        await probes.wait_until(
            serves, what=f"agent {host.name}", deadline_s=probes.READY_TIMEOUT_S
        )
        return address


def _reach(host: hosts.NodeHost, addresses: str) -> str:
    """How `host` reaches each of "a:1,b:2" (several control-plane members)."""
    return ",".join(host.reach(address) for address in addresses.split(","))

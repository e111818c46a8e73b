"""Several control-plane members for `pilothouse up --control-planes N` (3 for HA).

Each member `cp-i` is a supervised child (`python3 -m controlplane`) on a host of its own:
with network namespaces (the default) the namespace "ph-<cluster>-cp-i" at the bridge's host
number 1 + i, with the usual fixed ports there (API 7070, join 7071, etcd client 2379, peer
2380); on the machine's network (`--network host`) loopback with free ports chosen once. Each
member's data dir is `<data-dir>/controlplanes/cp-i/`, with its own embedded etcd, the three
forming one etcd cluster (`--etcd-name cp-i --etcd-initial-cluster cp-1=…,cp-2=…,cp-3=…`).

Start, for a reason each:
1. the shared PKI: `python3 -m controlplane --init-pki` in cp-1's data dir makes the cluster
   CA, the etcd CA and the Secrets encryption keys, and `pki/` is copied to the other members,
   before any starts (each member then issues its own serving certificates from those CAs);
   this is the copy a person makes by hand for a real install (see controlplane.leader.settings);
2. all members at once: a member of a new etcd cluster waits for a majority before it serves;
3. each member's address files, then its API serving (with cp-1's admin credentials).

Invariant: `addresses` and `join_addresses` list every member ("a:7070,b:7070,c:7070" once
joined), which is what agents and the CLI are given; any one member serves the whole API.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from pilothouse.cli.cluster import hosts, probes
from pilothouse.cli.cluster import registry as local_registry
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.security import ClusterCredentials
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor
from pilothouse.process import addressfile

log = structlog.get_logger(__name__)

API_PORT, JOIN_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT = 7070, 7071, 2379, 2380


def names(count: int) -> list[str]:
    return [f"cp-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class Member:
    """One control-plane member: where it runs and serves."""

    host: hosts.NodeHost
    data_dir: Path
    listen: str  # API "HOST:PORT"
    join: str  # join port "HOST:PORT"
    peer: str  # etcd peer "HOST:PORT"
    client_port: int  # etcd client port on the same host

    @property
    def name(self) -> str:
        return self.host.name


def plan(layout: Layout, placed: Sequence[hosts.NodeHost]) -> list[Member]:
    """Addresses and ports of each member (fixed in a namespace, free on loopback)."""
    members = []
    for host in placed:
        own_network = host.address not in ("127.0.0.1", "localhost")
        address = host.address

        def port(fixed: int, *, own: bool = own_network) -> int:
            return fixed if own else hosts.free_port()

        members.append(
            Member(
                host=host,
                data_dir=layout.controlplane_member(host.name),
                listen=f"{address}:{port(API_PORT)}",
                join=f"{address}:{port(JOIN_PORT)}",
                peer=f"{address}:{port(ETCD_PEER_PORT)}",
                client_port=port(ETCD_CLIENT_PORT),
            )
        )
    return members


class ControlPlanes:
    """Start and stop the members of one local control plane (see the module docstring)."""

    def __init__(
        self,
        layout: Layout,
        supervisor: Supervisor,
        members: Sequence[Member],
        *,
        registry: str,
        insecure: bool,
        flags: Sequence[str] = (),
    ) -> None:
        self.layout = layout
        self.supervisor = supervisor
        self.members = list(members)
        self._registry = registry
        self._insecure = insecure
        self._flags = tuple(flags)  # more control-plane flags, the same for every member

    @property
    def addresses(self) -> str:
        return ",".join(m.listen for m in self.members)

    @property
    def join_addresses(self) -> str:
        return ",".join(m.join for m in self.members)

    @property
    def first(self) -> Member:
        return self.members[0]

    def credentials(self) -> ClusterCredentials:
        """cp-1's admin and control-plane credentials (every member shares the CA)."""
        return ClusterCredentials.load(self.first.data_dir)

    def argv(self, member: Member) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer}" for m in self.members)
        argv = [
            sys.executable, "-m", "controlplane",
            "--data-dir", str(member.data_dir),
            "--listen", member.listen,
            "--name", member.name,
            "--etcd-name", member.name,
            "--etcd-initial-cluster", initial,
            "--etcd-client-port", str(member.client_port),
        ]  # fmt: skip
        argv += ["--insecure"] if self._insecure else ["--join-listen", member.join]
        if self._registry:  # the nodes' mirrors, so new revisions pin tags to digests
            mirrors = local_registry.write_mirrors(
                member.data_dir / "registries.yaml",
                registry_address=member.host.reach(self._registry),
                account=local_registry.credentials(self.layout.registry),
            )
            argv += ["--registries", str(mirrors)]
        return [*argv, *self._flags]

    async def start(self) -> str:
        """Every member serving; returns the API addresses ("a,b,c")."""
        for member in self.members:
            member.data_dir.mkdir(parents=True, exist_ok=True)
            addressfile.remove(member.data_dir / "controlplane.addr", member.data_dir / "join.addr")
        await self._share_pki()
        for member in self.members:
            await self.supervisor.start(
                ChildSpec(
                    name=member.name,
                    argv=tuple(member.host.command(self.argv(member))),
                    log_path=self.layout.log(member.name),
                    stop_timeout=20.0,
                )
            )
        for member in self.members:
            await self._serving(member)
        log.info("cluster.controlplanes_ready", members=self.addresses)
        return self.addresses

    async def stop(self) -> None:
        await asyncio.gather(*(self.supervisor.stop(m.name) for m in self.members))

    async def _share_pki(self) -> None:
        first = self.first
        if not (first.data_dir / "pki" / "ca.crt").exists():
            argv = [*self.argv(first), "--init-pki"]
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            output, _ = await process.communicate()
            if process.returncode != 0:
                raise probes.NotReady(
                    f"the control plane's PKI was not made ({process.returncode}): "
                    f"{output.decode(errors='replace')[-2000:]}"
                )
        for member in self.members[1:]:
            target = member.data_dir / "pki"
            if not (target / "ca.crt").exists():
                await asyncio.to_thread(shutil.copytree, first.data_dir / "pki", target)

    async def _serving(self, member: Member) -> None:
        address_file = member.data_dir / "controlplane.addr"
        what = f"control plane {member.name} (log: {self.layout.log(member.name)})"

        def alive() -> bool:
            return self.supervisor.pid(member.name) is not None

        await probes.address_from(address_file, what=what, alive=alive)
        tls = None if self._insecure else self.credentials().admin

        async def serves() -> bool:
            return await probes.controlplane_serves(member.listen, tls=tls)

        await probes.wait_until(serves, what=f"{what}: its API", deadline_s=probes.READY_TIMEOUT_S)

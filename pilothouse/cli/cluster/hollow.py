"""`up --hollow-nodes N`: one `pilothouse hollow` process beside the real agents.

The hollow nodes join as any node does: with a join token (made for them over the API, short-
lived, used by each of their joins, in a 0600 file of `<data-dir>/nodes/hollow/`, never on a
command line, removed once they are all Ready) and the CA's hash; they listen on the address
the control plane reaches nodes at (`service_host`) and are supervised as one child
("hollow"). Past what the default cluster CIDR holds (a /24 per node out of a /16), the
control plane is started with a larger one (`cluster_cidr`).

Invariant: nothing of the control plane knows these nodes are simulated.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pilothouse import credentials, pki
from pilothouse.cli.cluster import probes
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.security import ClusterCredentials
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

NAME = "hollow"
NAME_PREFIX = "hollow-"
TOKEN_TTL_S = 30 * 60
# 10.240.0.0/12: 4,096 /24 blocks (the default 10.244.0.0/16 inside it, so real nodes' ranges
# stay where they were); only when the default's 255 blocks would not do.
LARGE_CLUSTER_CIDR = "10.240.0.0/12"
DEFAULT_CIDR_NODES = 250
# A large cluster's control plane stalls its event loop for more than the default 2 s lease
# (measured: bench/scale.py at 100 nodes and 3,000 pods lost its term every ~3 s, each new
# term starting every controller and node sync again); Kubernetes' leases are 15 s.
LARGE_LEASE_NODES = 50
LARGE_LEASE_TTL_S = 10


def controlplane_flags(*, nodes: int, hollow_nodes: int, control_planes: int) -> list[str]:
    """The control plane's flags for this many nodes ([] for the defaults)."""
    flags = []
    if nodes + hollow_nodes > DEFAULT_CIDR_NODES:
        flags += ["--cluster-cidr", LARGE_CLUSTER_CIDR]
    if nodes + hollow_nodes > LARGE_LEASE_NODES and control_planes == 1:
        flags += ["--leader-lease-ttl", str(LARGE_LEASE_TTL_S)]
    return flags


async def create_token(server: str, tls: credentials.TlsMaterial, *, nodes: int) -> str:
    """A join token for the hollow nodes: not bound to one node, used by each of them."""
    async with credentials.secure_channel(server, tls) as channel:
        created = await api_grpc.TokensStub(channel).CreateToken(
            api.CreateTokenRequest(
                ttl_seconds=TOKEN_TTL_S, description=f"pilothouse up: {nodes} hollow nodes"
            ),
            timeout=10.0,
        )
    return str(created.token)


def child(
    *,
    state_dir: Path,
    log_path: Path,
    count: int,
    server: str,
    join_server: str,
    token_file: Path | None,
    ca_cert_hash: str,
    node_ip: str,
) -> ChildSpec:
    """The supervised `pilothouse hollow` process."""
    argv = [sys.executable, "-m", "nodeagent.hollow", "--nodes", str(count)]
    argv += ["--name-prefix", NAME_PREFIX, "--state-dir", str(state_dir), "--node-ip", node_ip]
    argv += ["--server", server]
    if token_file is None:
        argv.append("--insecure")
    else:
        argv += ["--join-server", join_server, "--token-file", str(token_file)]
        argv += ["--ca-cert-hash", ca_cert_hash]
    return ChildSpec(name=NAME, argv=tuple(argv), log_path=log_path, stop_timeout=15.0)


async def start(
    supervisor: Supervisor,
    layout: Layout,
    *,
    count: int,
    server: str,
    join_server: str,
    secured: ClusterCredentials | None,
    node_ip: str,
) -> None:
    """Start the hollow nodes' child and wait until all `count` are Ready (once the real
    nodes are); with `secured` (the cluster's credentials) they join with a token made for
    them, removed after."""
    state = layout.node(NAME)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file = None
    if secured is not None:
        token_file = state / "join-token"
        token = await create_token(server, secured.admin, nodes=count)
        pki.write_secret(token_file, token.encode() + b"\n")
    await supervisor.start(
        child(
            state_dir=state,
            log_path=layout.log(NAME),
            count=count,
            server=server,
            join_server=join_server,
            token_file=token_file,
            ca_cert_hash=secured.ca_cert_hash if secured else "",
            node_ip=node_ip,
        )
    )
    wanted = names(count)
    admin = secured.admin if secured else None

    async def ready() -> bool:
        if supervisor.pid(NAME) is None:
            raise probes.NotReady(f"the hollow nodes ended: {layout.log(NAME)}")
        return wanted <= await probes.ready_nodes(server, tls=admin)

    await probes.wait_until(
        ready,
        what=f"{count} hollow nodes Ready (log: {layout.log(NAME)})",
        deadline_s=probes.READY_TIMEOUT_S + count * 0.2,
    )
    if token_file is not None:
        token_file.unlink(missing_ok=True)  # spent: each hollow node holds its certificate


def names(count: int) -> set[str]:
    """The hollow nodes' names, as `pilothouse hollow` makes them."""
    width = max(4, len(str(count)))
    return {f"{NAME_PREFIX}{i:0{width}d}" for i in range(1, count + 1)}


__all__ = ["NAME", "child", "controlplane_flags", "create_token", "names", "start"]

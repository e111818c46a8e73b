"""One etcd member as the control plane runs it: identity, place in a cluster, command
line, client TLS and health check.

Role: what `EmbeddedEtcd` (controlplane.store.embedded) and the test fixtures need to start
an etcd and know it is up, apart from supervising the process. `etcd_command` builds the
flags the module docstring of `embedded` promises: loopback or the member's peer host,
TLS on both ports with client certificates when `tls` is given, no HTTP/JSON gateway,
periodic auto-compaction with 5 min retention (defragmentation: `defrag`), a 2 GiB backend
quota, and PR_SET_PDEATHSIG through `setpriv` when it is present.

Invariants: a `Member` is what stays the same across restarts of one etcd (name, ports,
host); `Cluster.parse` refuses a list that names a member twice or lacks this member.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

from controlplane.store.tls import EtcdPki

INSTALL_HINT = "etcd not found on PATH: install it with `apt-get install etcd-server`"
AUTO_COMPACTION_MODE = "periodic"
AUTO_COMPACTION_RETENTION = "5m"  # as the Kubernetes API server compacts: every 5 min
QUOTA_BACKEND_BYTES = 2 * 1024**3


@dataclass(frozen=True, slots=True)
class Member:
    """What must stay the same across restarts of one embedded etcd."""

    name: str
    client_port: int
    peer_port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Cluster:
    """This member's place in a cluster of embedded etcds (see the module docstring)."""

    name: str
    peers: tuple[tuple[str, str], ...]  # (member name, "HOST:PORT" peer address), every member
    token: str = "pilothouse-etcd"

    @classmethod
    def parse(cls, name: str, initial: str) -> Cluster:
        """`initial` as etcd's `--initial-cluster`: "a=https://10.0.0.1:2380,b=…" (scheme
        optional; TLS or not is the control plane's choice)."""
        peers = []
        for item in (part.strip() for part in initial.split(",")):
            if not item:
                continue
            member, sep, url = item.partition("=")
            address = url.split("://", 1)[-1].rstrip("/")
            host, _, port = address.rpartition(":")
            if not sep or not member or not host or not port.isdigit():
                raise ValueError(
                    f"--etcd-initial-cluster entry {item!r}: expected NAME=HOST:PEER_PORT, "
                    "e.g. cp-1=10.0.0.1:2380"
                )
            peers.append((member.strip(), f"{host.strip('[]')}:{port}"))
        names = [member for member, _ in peers]
        if len(set(names)) != len(names):
            raise ValueError(f"--etcd-initial-cluster names a member twice: {names}")
        if name not in names:
            raise ValueError(
                f"--etcd-name {name!r} is not in --etcd-initial-cluster ({', '.join(names)})"
            )
        return cls(name=name, peers=tuple(peers))

    @property
    def host(self) -> str:
        return dict(self.peers)[self.name].rpartition(":")[0]

    @property
    def peer_port(self) -> int:
        return int(dict(self.peers)[self.name].rpartition(":")[2])

    def initial(self, scheme: str) -> str:
        return ",".join(f"{name}={scheme}://{url_host(address)}" for name, address in self.peers)


def url_host(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"[{host}]:{port}" if ":" in host else address


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def etcd_command(
    *,
    binary: str,
    member: Member,
    data_dir: Path,
    tls: EtcdPki | None = None,
    cluster: Cluster | None = None,
) -> list[str]:
    """The etcd command line for a single-member cluster on loopback, or for one member of
    `cluster` (TLS only with `tls`)."""
    scheme = "https" if tls is not None else "http"
    host = url_host(f"{member.host}:0").rpartition(":")[0]
    client = f"{scheme}://{host}:{member.client_port}"
    peer = f"{scheme}://{host}:{member.peer_port}"
    command = [
        binary,
        f"--name={member.name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={cluster.initial(scheme) if cluster else f'{member.name}={peer}'}",
        f"--initial-cluster-token={cluster.token if cluster else member.name}",
        "--initial-cluster-state=new",
        f"--auto-compaction-mode={AUTO_COMPACTION_MODE}",
        f"--auto-compaction-retention={AUTO_COMPACTION_RETENTION}",
        f"--quota-backend-bytes={QUOTA_BACKEND_BYTES}",
        "--snapshot-count=10000",
        "--logger=zap",
        "--log-outputs=stderr",
        # No HTTP/JSON gateway on the client port (/v3/kv/range …): gRPC only.
        "--enable-grpc-gateway=false",
    ]
    if tls is not None:
        command += [
            f"--cert-file={tls.server_cert}",
            f"--key-file={tls.server_key}",
            f"--trusted-ca-file={tls.ca_cert}",
            "--client-cert-auth",
            f"--peer-cert-file={tls.peer_cert}",
            f"--peer-key-file={tls.peer_key}",
            f"--peer-trusted-ca-file={tls.ca_cert}",
            "--peer-client-cert-auth",
        ]
    setpriv = shutil.which("setpriv")
    if setpriv:
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    return command


def client_ssl_context(tls: EtcdPki) -> ssl.SSLContext:
    """TLS as the control plane's etcd client: the etcd CA, the client certificate."""
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    return context


async def is_healthy(port: int, tls: EtcdPki | None = None, host: str = "127.0.0.1") -> bool:
    """Whether etcd on this port (of loopback, or `host`) answers /health with a leader."""
    try:
        context = client_ssl_context(tls) if tls is not None else None
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            )
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    try:
        writer.write(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(2.0):
            body = await reader.read()
        return b'"health":"true"' in body
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        # Bounded: over TLS, wait_closed() can wait for ever on the closing handshake (CPython
        # issue 83939), and this check runs in etcd's start path.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()

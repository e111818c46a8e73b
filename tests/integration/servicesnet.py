"""A throw-away node for Services data-plane tests: namespaces, CNI pods, echo servers.

    client netns (192.0.2.2) ── veth ── node netns (192.0.2.1; CNI bridge ph0 10.244.1.1)
                                           ├── veth ── pod netns "a" (10.244.1.x)
                                           └── veth ── pod netns "b" (10.244.1.y)

Pods are attached by the agent's own CNI configuration (`cni.conflist`: bridge with hairpin
mode, host-local), so what the tests prove holds for the pod network the agent builds.
Servers and clients are sockets of this process made inside a namespace by a throwaway
thread (a socket stays in the namespace it was created in), so no process is left to kill.
Every address exists only inside namespaces made here; `topology` removes all of it (CNI
attachments, namespaces and with them veths and the bridge) also when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.network import cni

PLUGIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/run/netns")
POD_CIDR = "10.244.1.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "192.0.2.1"
CLIENT_IP = "192.0.2.2"
BRIDGE = "ph0"
_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def socket_in(netns: str, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A non-blocking IPv4 socket that lives in the namespace /run/netns/`netns`."""
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, kind))
        except BaseException as error:
            made.append(error)

    thread = threading.Thread(target=enter_and_make, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    made[0].setblocking(False)
    return made[0]


@dataclass(frozen=True, slots=True)
class Reply:
    """Who answered (the server's name) and whom it saw as the client."""

    server: str
    peer: str


async def ask(netns: str, ip: str, port: int, *, within: float = 3.0) -> Reply:
    """One TCP exchange from inside `netns`; raises what connect raised (refused, timeout)."""
    sock = socket_in(netns)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, port)), within)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        line = await asyncio.wait_for(reader.readline(), within)
    finally:
        writer.close()
    server, peer = line.decode().split()
    return Reply(server, peer)


async def ask_udp(netns: str, ip: str, port: int, *, within: float = 3.0) -> Reply:
    """One UDP request and its answer, from a fresh socket (a new flow) inside `netns`."""
    loop = asyncio.get_running_loop()
    with socket_in(netns, socket.SOCK_DGRAM) as sock:
        await loop.sock_sendto(sock, b"?", (ip, port))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 512), within)
    server, peer = data.decode().split()
    return Reply(server, peer)


async def refused_within(netns: str, ip: str, port: int) -> float:
    """Seconds until a TCP connect from `netns` is refused; fails if it is not refused."""
    started = time.perf_counter()
    try:
        reply = await ask(netns, ip, port, within=5.0)
    except ConnectionRefusedError:
        return time.perf_counter() - started
    except TimeoutError:
        raise AssertionError(f"connect to {ip}:{port} timed out instead of being refused") from None
    raise AssertionError(f"{ip}:{port} answered ({reply}) instead of refusing")


@dataclass
class Pod:
    label: str
    netns: str
    ip: str


@dataclass
class Topology:
    tag: str
    node: str
    client: str
    network: cni.CniNetwork
    pods: dict[str, Pod] = field(default_factory=dict)
    servers: list[asyncio.AbstractServer | asyncio.BaseTransport] = field(default_factory=list)

    @property
    def node_netns(self) -> str:
        return str(NETNS_DIR / self.node)

    async def serve(self, pod: Pod, port: int, *, name: str | None = None) -> None:
        """An echo server on `pod`: each connection gets "NAME PEER-IP" and is closed."""
        label = name or pod.label
        sock = socket_in(pod.netns)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((pod.ip, port))
        sock.listen(128)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(f"{label} {writer.get_extra_info('peername')[0]}\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()

        self.servers.append(await asyncio.start_server(answer, sock=sock))

    async def serve_udp(self, pod: Pod, port: int) -> None:
        sock = socket_in(pod.netns, socket.SOCK_DGRAM)
        sock.bind((pod.ip, port))
        label = pod.label

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(f"{label} {addr[0]}".encode(), addr)  # type: ignore[attr-defined]

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, sock=sock)
        self.servers.append(transport)


@contextlib.asynccontextmanager
async def topology(tmp_path: Path, pods: Sequence[str] = ("a", "b")) -> AsyncIterator[Topology]:
    """The node, its pods and an outside client; all removed on the way out."""
    tag = secrets.token_hex(3)
    node, client = f"phs{tag}-node", f"phs{tag}-client"
    link = f"phs{tag}c"
    names = [node, client, *(f"phs{tag}-{p}" for p in pods)]
    network = cni.CniNetwork(
        PLUGIN_DIR,
        cni.conflist(POD_CIDR, bridge=BRIDGE, ipam_dir=str(tmp_path / "ipam"), port_map=False),
        tmp_path / "cni",
        exec_prefix=["ip", "netns", "exec", node],
    )
    topo = Topology(tag, node, client, network)
    try:
        for name in names:
            sh("ip", "netns", "add", name)
        sh("ip", "-n", node, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "link", "add", link, "netns", node, "type", "veth", "peer", "name", "eth0",
           "netns", client)  # fmt: skip
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", link)
        sh("ip", "-n", node, "link", "set", link, "up")
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", client, "link", "set", "eth0", "up")
        sh("ip", "-n", client, "link", "set", "lo", "up")
        for label in pods:
            ns = f"phs{tag}-{label}"
            attached = await network.setup(f"default_{label}", str(NETNS_DIR / ns))
            topo.pods[label] = Pod(label, ns, attached.ip)
        # The bridge exists now: bridged pod traffic must pass netfilter (br_netfilter).
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        yield topo
    finally:
        for server in topo.servers:
            server.close()
        for pod_id in list(network.attached()):
            with contextlib.suppress(Exception):
                await network.teardown(pod_id)
        for name in names:
            sh("ip", "netns", "delete", name, check=False)
        left = [n for n in names if (NETNS_DIR / n).exists()]
        assert not left, f"namespaces left behind: {left}"

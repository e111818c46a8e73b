"""Test helpers for pods in network namespaces: sandboxes wired by CNI, servers and clients.

`Sandboxes` plays the agent's part for network tests: it makes a pod's namespace, attaches it
with a node's `CniNetwork`, runs busybox servers inside it, and undoes all of it (processes,
CNI attachments, namespace files) at `close`, even after a failed test. Only our own
namespaces are ever addressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.network import cni, netns
from pilothouse.cli.cluster.netns import HostNetwork, HostNetworkError, NodeHost, default_pod_cidrs

PLUGIN_DIR = Path("/usr/lib/cni")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def missing_support() -> str | None:
    """Why network tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, bridges)"
    if not (PLUGIN_DIR / "bridge").exists():
        return "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(BUSYBOX).exists():
        return "busybox-static is not installed (apt-get install busybox-static)"
    return None


def needs_network() -> list[pytest.MarkDecorator]:
    """The marks of a test module that makes namespaces and runs CNI plugins (`pytestmark`)."""
    reason = missing_support()
    return [pytest.mark.root, pytest.mark.skipif(reason is not None, reason=str(reason))]


def missing_iptables() -> str | None:
    if shutil.which("iptables") is None:
        return "iptables is not installed (portmap needs it; apt-get install iptables)"
    return None


def run_id() -> str:
    """A short unique tag for names of this test run (interface names have 15 characters)."""
    return secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class Pod:
    id: str
    netns_path: str
    network: cni.PodNetwork

    @property
    def ip(self) -> str:
        return self.network.ip


class Sandboxes:
    """Pods of one node: namespaces under `root`, attached through `network`."""

    def __init__(self, network: cni.CniNetwork, root: Path) -> None:
        self.network = network
        self.root = root
        self.pods: dict[str, Pod] = {}
        self.paths: list[str] = []
        self.servers: list[subprocess.Popen[bytes]] = []

    async def add(self, pod_id: str, ports: Sequence[cni.PortMapping] = ()) -> Pod:
        path = str(self.root / netns.file_name(pod_id))
        self.paths.append(path)
        await netns.create(path)
        network = await self.network.setup(pod_id, path, ports)
        pod = Pod(pod_id, path, network)
        self.pods[pod_id] = pod
        return pod

    def serve(self, pod: Pod, port: int, body: str) -> None:
        """Run busybox httpd in the pod on `port`, answering `body` at /index.html."""
        docroot = self.root / f"www-{netns.file_name(pod.id)}-{port}"
        docroot.mkdir(parents=True, exist_ok=True)
        (docroot / "index.html").write_text(body)
        self.servers.append(
            subprocess.Popen(
                [
                    "nsenter",
                    f"--net={pod.netns_path}",
                    "--",
                    BUSYBOX,
                    "httpd",
                    "-f",
                    "-p",
                    str(port),
                    "-h",
                    str(docroot),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    async def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            server.wait()
        for pod_id in list(self.network.attached()):
            with contextlib.suppress(Exception):
                await self.network.teardown(pod_id)
        for path in self.paths:
            netns.delete(path)


def in_netns(prefix: Sequence[str], argv: Sequence[str], *, timeout: float = 10) -> str:
    proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def sh(*argv: str, check: bool = True) -> str:
    """Run a short command (ip, iptables) and return its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def pod_prefix(pod: Pod) -> list[str]:
    return ["nsenter", f"--net={pod.netns_path}", "--"]


async def fetch(prefix: Sequence[str], url: str, *, attempts: int = 30) -> str:
    """GET `url` from inside a namespace, retrying while the server starts; the body.

    (Debian's static busybox 1.35 crashes in `wget -T`; `timeout` bounds each try instead.)
    """
    last = ""
    for _ in range(attempts):
        proc = await asyncio.create_subprocess_exec(
            *prefix, "timeout", "3", BUSYBOX, "wget", "-q", "-O", "-", url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode == 0:
            return out.decode()
        last = err.decode().strip()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} could not be fetched: {last}")


async def reachable(prefix: Sequence[str], address: str) -> bool:
    """One ping from inside a namespace (1 s deadline)."""
    proc = await asyncio.create_subprocess_exec(
        *prefix, BUSYBOX, "ping", "-c", "1", "-W", "1", address,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait() == 0


@contextlib.contextmanager
def node_hosts(count: int, *, pod_cidrs: Sequence[str] = ()) -> Iterator[list[NodeHost]]:
    """A throw-away cluster of `count` node hosts on its own bridge and subnet.

    The cluster name and the subnet (172.30.X.0/24) are picked per run, so concurrent runs
    never collide; everything is destroyed at exit, processes left in the namespaces included.
    """
    cluster = f"t{run_id()}"
    names = [f"node-{i}" for i in range(1, count + 1)]
    cidrs = dict(zip(names, pod_cidrs, strict=True)) if pod_cidrs else default_pod_cidrs(names)
    hosts: list[NodeHost] | None = None
    network = HostNetwork()
    try:
        for _ in range(20):
            network = HostNetwork(subnet=f"172.30.{secrets.randbelow(190) + 64}.0/24")
            try:
                hosts = network.create(cluster, cidrs)
                break
            except HostNetworkError as error:
                if "overlaps" not in str(error):
                    raise
        assert hosts is not None, "no free 172.30.X.0/24 subnet for the test cluster"
        yield hosts
    finally:
        network.destroy(cluster, kill_processes=True)
        assert HostNetwork.namespaces(cluster) == [], f"namespaces of {cluster} were left"

"""Pod sandboxes: the network a pod's containers share, made before them and removed after.

This is the one place pod workers call for networking. A *sandbox* is what the containers of
one pod join (`Sandbox.netns_path` -> `ContainerSpec.netns_path`) and the pod's address
(`Sandbox.pod_ip` -> `status.podIP`). Modes (`--network`):
- `none`: no sandbox; each container gets a network namespace of its own with loopback only
  (the runtime's default; no pod IP);
- `host`: containers share the node's network (Kubernetes' hostNetwork); the pod IP is the
  node IP;
- `cni`: a pinned namespace per pod under `<state-dir>/netns/`, attached by the CNI plugins
  (bridge "ph0" as the pods' gateway, host-local addresses from the node's pod CIDR, portmap
  for hostPorts). Needs one agent per network namespace: the bridge is the namespace's.

Invariants:
- a sandbox is named by the pod's namespace, name and uid, so a replaced pod (new uid) never
  inherits its predecessor's namespace, address or hostPorts;
- `attach` is idempotent (a retried pod start gets the same sandbox) and leaves nothing when
  it fails; `detach` is idempotent and works after an agent restart from on-disk records;
- `detach_others(pods)` removes every sandbox that belongs to none of `pods` (what a crash or
  a missed removal left), so sandboxes converge level-triggered like containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.network import cni, netns
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

PLUGIN_DIR = Path("/usr/lib/cni")
HOST_NETNS = "/proc/self/ns/net"  # as resolved by runc: the namespace it runs in, the node's


class Mode(enum.Enum):
    NONE = "none"
    HOST = "host"
    CNI = "cni"


@dataclass(frozen=True, slots=True)
class Sandbox:
    """What a pod's containers join, and the pod's address."""

    netns_path: str | None  # None: each container gets a namespace of its own
    pod_ip: str  # "" when the pod has no address of its own


def sandbox_id(pod: objects_pb2.Pod) -> str:
    """The pod's sandbox name: namespace, name and uid (a replaced pod gets a new one)."""
    m = pod.metadata
    return netns.file_name(f"{m.namespace or 'default'}_{m.name}_{m.uid}")


def port_mappings(pod: objects_pb2.Pod) -> list[cni.PortMapping]:
    """The pod's hostPorts, as portmap takes them."""
    return [
        cni.PortMapping(
            host_port=p.host_port,
            container_port=p.container_port,
            protocol=(p.protocol or "TCP").lower(),
            host_ip=p.host_ip,
        )
        for c in pod.spec.containers
        for p in c.ports
        if p.host_port
    ]


class PodNetworks:
    """Makes and removes pod sandboxes for one node."""

    def __init__(
        self,
        *,
        mode: Mode,
        state_dir: Path,
        node_ip: str = "",
        pod_cidr: str | None = None,
        plugin_dir: Path = PLUGIN_DIR,
        bridge: str = "ph0",
        exec_prefix: Sequence[str] = (),
    ) -> None:
        """`exec_prefix` runs the plugins in the node's namespace when the caller is not in
        it (tests); an agent runs in its node's namespace and leaves it empty."""
        self.mode = mode
        self.node_ip = node_ip
        self._netns_dir = Path(state_dir) / "netns"
        self._cni: cni.CniNetwork | None = None
        if mode is Mode.CNI:
            if not pod_cidr:
                raise ValueError("--network cni needs the node's pod CIDR (--pod-cidr)")
            conf = cni.conflist(
                pod_cidr, bridge=bridge, ipam_dir=str(Path(state_dir) / "cni" / "ipam")
            )
            self._cni = cni.CniNetwork(
                plugin_dir, conf, Path(state_dir) / "cni" / "pods", exec_prefix=exec_prefix
            )

    async def attach(self, pod: objects_pb2.Pod) -> Sandbox:
        """The pod's sandbox, made now if it does not exist yet."""
        if self.mode is Mode.NONE:
            return Sandbox(netns_path=None, pod_ip="")
        if self.mode is Mode.HOST:
            return Sandbox(netns_path=HOST_NETNS, pod_ip=self.node_ip)
        assert self._cni is not None
        sid = sandbox_id(pod)
        path = str(self._netns_dir / sid)
        await netns.create(path)
        try:
            network = await self._cni.setup(sid, path, port_mappings(pod))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(netns.delete, path)
            raise
        return Sandbox(netns_path=path, pod_ip=network.ip)

    async def detach(self, pod: objects_pb2.Pod) -> None:
        """Remove the pod's sandbox: release its address and hostPorts, drop its namespace."""
        await self._detach(sandbox_id(pod))

    async def detach_others(self, pods: Iterable[objects_pb2.Pod]) -> list[str]:
        """Remove every sandbox that belongs to none of `pods`; the removed sandbox ids."""
        if self._cni is None:
            return []
        keep = {sandbox_id(p) for p in pods}
        found = set(self._cni.attached())
        if self._netns_dir.is_dir():
            found.update(p.name for p in self._netns_dir.iterdir())
        stale = sorted(found - keep)
        for sid in stale:
            log.info("pod.sandbox_orphaned", sandbox=sid)
            await self._detach(sid)
        return stale

    async def _detach(self, sid: str) -> None:
        if self._cni is None:
            return
        path = self._netns_dir / sid
        await self._cni.teardown(sid, str(path))
        await asyncio.to_thread(netns.delete, path)

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

The node's *pod CIDR* (cni mode) is given at construction (`--pod-cidr`), or, for an agent
that gets it from the control plane (`pod_cidr_from_registration`), bound later with `bind`
once registration returns it. Such an agent remembers the range the control plane confirmed
in `<state-dir>/pod-cidr` (never one it was refused) and starts with it the next time, since
its re-adopted pods already have addresses from it (and it asks the control plane for that
range again).

Invariants:
- a sandbox is named by the pod's namespace, name and uid, so a replaced pod (new uid) never
  inherits its predecessor's namespace, address or hostPorts;
- `attach` is idempotent (a retried pod start gets the same sandbox) and leaves nothing when
  it fails; `detach` is idempotent and works after an agent restart from on-disk records;
- `detach_others(pods)` removes every sandbox that belongs to none of `pods` (what a crash or
  a missed removal left), so sandboxes converge level-triggered like containers. Detaching
  works from the attachments' records, also before the pod CIDR is known;
- once in use, the pod CIDR never changes for the life of the object; a range learnt at
  registration is on disk before any pod gets an address from it; `attach` before there is
  one waits for it a few seconds
  (registration is usually a moment away), then fails with `PodCidrUnknown`, which pod
  workers report and retry like any sandbox failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.network import cni, netns
from nodeagent.state.quarantine import quarantine
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

PLUGIN_DIR = Path("/usr/lib/cni")
POD_CIDR_FILE = "pod-cidr"
POD_CIDR_WAIT_S = 10.0
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


class PodCidrUnknown(cni.CniError):
    """A sandbox was asked for before the node knows its pod CIDR (not registered yet)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.plugin = "(pod CIDR)"
        self.command = cni.Command.ADD
        self.code = 0


def remembered_pod_cidr(state_dir: Path) -> str:
    """The pod CIDR an agent on `state_dir` was bound to ("" if none)."""
    path = Path(state_dir) / POD_CIDR_FILE
    try:
        text = path.read_text().strip()
        if text:
            ipaddress.ip_network(text)
        return text
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except (OSError, ValueError) as exc:  # ValueError: bad UTF-8, or not a network
        quarantine(path, error=exc, instead="the pod CIDR is asked of the control plane again")
        return ""


def remember_pod_cidr(state_dir: Path, pod_cidr: str) -> None:
    path = Path(state_dir) / POD_CIDR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(pod_cidr + "\n")
    temporary.replace(path)


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
        pod_cidr_from_registration: bool = False,
        pod_cidr_wait: float = POD_CIDR_WAIT_S,
        mtu: int | None = None,
    ) -> None:
        """`exec_prefix` runs the plugins in the node's namespace when the caller is not in
        it (tests); an agent runs in its node's namespace and leaves it empty.
        `pod_cidr_from_registration`: the pod CIDR may be unknown until `bind` (cni mode);
        the remembered one is bound now unless `pod_cidr` says otherwise. `mtu`: the pods'
        (None: the bridge plugin's default)."""
        self.mode = mode
        self._mtu = mtu
        self.node_ip = node_ip
        self._state_dir = Path(state_dir)
        self._netns_dir = self._state_dir / "netns"
        self._bridge = bridge
        self._remember = pod_cidr_from_registration
        self._pod_cidr_wait = pod_cidr_wait
        self._bound = asyncio.Event()
        self.pod_cidr = ""  # "" until bound (cni mode only)
        self._cni: cni.CniNetwork | None = None
        if mode is not Mode.CNI:
            return
        self._cni = cni.CniNetwork(
            plugin_dir, None, self._state_dir / "cni" / "pods", exec_prefix=exec_prefix
        )
        if pod_cidr_from_registration:
            remembered = remembered_pod_cidr(self._state_dir)
            if pod_cidr and remembered and remembered != pod_cidr:
                log.warning(
                    "node.pod_cidr_changed",
                    pod_cidr=pod_cidr,
                    previous=remembered,
                    note="pods started before keep their addresses from the previous range",
                )
            if pod_cidr:
                self._use(pod_cidr, source="--pod-cidr")
            elif remembered:
                self._use(remembered, source=str(self._state_dir / POD_CIDR_FILE))
        elif not pod_cidr:
            raise ValueError("--network cni needs the node's pod CIDR (--pod-cidr)")
        else:
            self._use(pod_cidr, source="--pod-cidr")

    def bind(self, pod_cidr: str) -> bool:
        """Use `pod_cidr`, the range the control plane gave the node, for the pods' addresses
        from now on, and remember it (cni mode; idempotent).

        False when another range is in use already: that one stays (pods have addresses from
        it), and the caller should say so."""
        if self._cni is None:
            return True
        if self.pod_cidr and self.pod_cidr != pod_cidr:
            return False
        if self._remember and remembered_pod_cidr(self._state_dir) != pod_cidr:
            remember_pod_cidr(self._state_dir, pod_cidr)  # before any pod gets an address
        if not self.pod_cidr:
            self._use(pod_cidr, source="registration")
        return True

    def _use(self, pod_cidr: str, *, source: str) -> None:
        assert self._cni is not None
        self._cni.conf = cni.conflist(
            pod_cidr,
            bridge=self._bridge,
            ipam_dir=str(self._state_dir / "cni" / "ipam"),
            mtu=self._mtu,
        )
        self.pod_cidr = pod_cidr
        self._bound.set()
        log.info("node.pod_cidr", pod_cidr=pod_cidr, source=source)

    async def attach(self, pod: objects_pb2.Pod) -> Sandbox:
        """The pod's sandbox, made now if it does not exist yet."""
        if self.mode is Mode.NONE:
            return Sandbox(netns_path=None, pod_ip="")
        if self.mode is Mode.HOST:
            return Sandbox(netns_path=HOST_NETNS, pod_ip=self.node_ip)
        assert self._cni is not None
        sid = sandbox_id(pod)
        if not self.pod_cidr and self._cni.attached().get(sid) is None:
            await self._wait_for_pod_cidr()  # a re-adopted pod keeps its address meanwhile
        path = str(self._netns_dir / sid)
        await netns.create(path)
        try:
            network = await self._cni.setup(sid, path, port_mappings(pod))
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(netns.delete, path)
            raise
        return Sandbox(netns_path=path, pod_ip=network.ip)

    async def _wait_for_pod_cidr(self) -> None:
        try:
            async with asyncio.timeout(self._pod_cidr_wait):
                await self._bound.wait()
        except TimeoutError:
            raise PodCidrUnknown(
                "the node has no pod CIDR yet: it gets one when it registers with the control "
                "plane (see the agent's log for why it has not), or from --pod-cidr"
            ) from None

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

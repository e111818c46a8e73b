"""The node's Services, kept in step with what the control plane pushes: its data plane
(`services.DataPlane`, one nftables table) and its DNS server (`dns.DnsServer`).

`ServiceSync.push(pushed, exclude=...)` records the newest state (the cluster's Services and
EndpointSlices, or None to keep the last ones) and the addresses to leave out (this node's
pods on their way out), and returns once a programming pass that started after it has
finished: `Outcome.programmed` then says the data plane routes by it (vacuously true on a
node without a data plane). Passes are coalesced: a burst of pushes costs one or two `nft -f`
runs, each with the newest state. The runnable (`run`) also re-programs every `RESYNC_S`
seconds to heal drift, and starts the DNS server on the pod bridge's gateway address once
the node knows its pod CIDR (pods get that address as their nameserver).

Invariants:
- nothing is programmed before the first push: a restarted agent leaves the table its
  predecessor programmed in place until the control plane speaks (traffic keeps flowing);
- a push with no Services at all removes the table (nothing to route; `down` drains so);
- a failed pass keeps the previous table (nft's transaction) and is reported in `Outcome`;
  the next push or resync tries again;
- stopping the runnable stops the DNS server but leaves the table (as containers outlive
  the agent, so does the routing to them); `remove()` takes it away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from nodeagent.discovery.convert import Pushed, convert
from nodeagent.dns.records import ClusterRecords
from nodeagent.dns.server import DnsServer
from nodeagent.services import requirements
from nodeagent.services.conntrack import Conntrack
from nodeagent.services.proxy import DataPlane, DataPlaneError

log = structlog.get_logger(__name__)

RESYNC_S = 60.0
PUSH_WAIT_S = 4.0  # below the control plane's SyncPods deadline (5 s)
DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class Outcome:
    programmed: bool
    error: str = ""


def gateway_of(pod_cidr: str) -> str:
    """The pod bridge's address: host-local's default gateway, the CIDR's first address."""
    return str(next(ipaddress.ip_network(pod_cidr, strict=False).hosts()))


class ServiceSync:
    """A Runnable: the node's data plane and DNS from the pushed Services (see the module)."""

    name = "services"

    def __init__(
        self,
        *,
        plane: DataPlane | None,
        node_ips: Sequence[str],
        pod_cidr: Callable[[], str],
        dns: bool = True,
        dns_port: int = DNS_PORT,
        resolv_conf: str | os.PathLike[str] | None = "/etc/resolv.conf",
    ) -> None:
        self.plane = plane
        self._node_ips = tuple(ip for ip in node_ips if ip and ip != "127.0.0.1")
        self._pod_cidr = pod_cidr
        self._want_dns = dns
        self._dns_port = dns_port
        self._resolv_conf = resolv_conf
        self.dns: DnsServer | None = None
        self.pushed: Pushed | None = None
        self._exclude: frozenset[str] = frozenset()
        self._wanted = 0  # version of the newest push
        self._done = 0  # version the last finished pass programmed (or tried)
        self._ok = 0  # version the last successful pass programmed
        self._error = ""
        self._wake = asyncio.Event()
        self._finished = asyncio.Condition()
        self.last_seconds = 0.0  # how long the last pass took (render + nft)
        self._conntrack = Conntrack(netns=plane.netns) if plane is not None else None
        self._routed: frozenset[str] = frozenset()  # endpoint addresses in the table

    @property
    def cluster_dns(self) -> str:
        """The address pods get as their nameserver ("" while there is none)."""
        if not self._want_dns or not self._pod_cidr():
            return ""
        return gateway_of(self._pod_cidr())

    @property
    def cluster_domain(self) -> str:
        return self.pushed.cluster_domain if self.pushed is not None else "cluster.local"

    async def push(
        self, pushed: Pushed | None, *, exclude: frozenset[str] = frozenset()
    ) -> Outcome:
        """Program `pushed` (None: the last one) without the `exclude` addresses; wait for it."""
        if self.pushed is None and pushed is None:
            return Outcome(programmed=self.plane is None)
        unchanged = (pushed is None or pushed == self.pushed) and exclude == self._exclude
        if unchanged and self._ok == self._wanted and self._done == self._wanted:
            return Outcome(True)  # the table already says exactly this
        if pushed is not None:
            self.pushed = pushed
        self._exclude = exclude
        self._wanted += 1
        version = self._wanted
        self._wake.set()
        try:
            async with asyncio.timeout(PUSH_WAIT_S), self._finished:
                await self._finished.wait_for(lambda: self._done >= version)
        except TimeoutError:
            return Outcome(False, f"the data plane did not finish within {PUSH_WAIT_S:g} s")
        return Outcome(self._ok >= version, self._error)

    async def run(self) -> None:
        if self.plane is not None:
            for missing in await requirements.check(netns=self.plane.netns):
                log.warning("services.requirement_missing", need=missing.need.value,
                            message=missing.message)  # fmt: skip
        try:
            while True:
                await self._ensure_dns()
                try:
                    timeout = RESYNC_S if self.dns is not None or not self._want_dns else 1.0
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
                await self._ensure_dns()
                await self._pass()
        finally:
            if self.dns is not None:
                await self.dns.close()
                self.dns = None

    async def remove(self) -> None:
        """Take the table away (a node's clean-up)."""
        if self.plane is not None:
            await self.plane.remove()

    async def _pass(self) -> None:
        version = self._wanted
        pushed = self.pushed
        if pushed is None:
            return
        started = time.perf_counter()
        pod_cidr = self._pod_cidr()
        converted = convert(
            pushed,
            node_ips=self._node_ips,
            pod_cidrs=(pod_cidr,) if pod_cidr else (),
            exclude=self._exclude,
        )
        for problem in converted.problems:
            log.warning("services.skipped", problem=problem)
        if self.dns is not None:
            self.dns.update(converted.records)
        error = ""
        if self.plane is not None:
            routed = frozenset(
                ep.ip for s in converted.state.services for p in s.ports for ep in p.endpoints
            )
            try:
                if pushed.services:
                    await self.plane.program(converted.state)
                else:
                    await self.plane.remove()
            except DataPlaneError as failed:
                error = str(failed)
                log.error("services.program_failed", error=error)
            else:
                gone, self._routed = self._routed - routed, routed
                if gone and self._conntrack is not None:
                    await self._conntrack.forget(gone)
        self.last_seconds = time.perf_counter() - started
        async with self._finished:
            self._done = max(self._done, version)
            if not error:
                self._ok = max(self._ok, version)
            self._error = error
            self._finished.notify_all()

    async def _ensure_dns(self) -> None:
        if self.dns is not None or not self._want_dns or not self._pod_cidr():
            return
        server = DnsServer(
            host=gateway_of(self._pod_cidr()),
            port=self._dns_port,
            resolv_conf=self._resolv_conf,
            records=ClusterRecords(),
        )
        try:
            await server.start()
        except OSError as error:
            log.error("dns.start_failed", address=f"{server.host}:{self._dns_port}",
                      error=str(error))  # fmt: skip
            self._want_dns = False
            return
        self.dns = server


async def route_device(node_ip: str) -> str | None:
    """The device to route the service CIDR through, for a node with no default route (the
    nodes of `up`): the one holding `node_ip`. None when a default route exists (ClusterIPs
    follow it to the output hook) or the address is on no device."""
    routes = await _ip_json("route", "show", "default")
    if routes:
        return None
    for link in await _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("local") == node_ip:
                return str(link.get("ifname")) or None
    return None


async def _ip_json(*args: str) -> list[dict[str, object]]:
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", "-j", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except FileNotFoundError:
        return []
    out, _ = await proc.communicate()
    try:
        found = json.loads(out or b"[]")
    except ValueError:
        return []
    return found if isinstance(found, list) else []

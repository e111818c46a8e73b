"""The node's Services data plane: program its one nftables table from state, remove it.

`DataPlane.program(state)` renders the whole table (`services.render`) and applies it with one
`nft -f` transaction that deletes and recreates it, so the kernel swaps rulesets atomically and
a failed apply leaves the previous table as it was. It is level-triggered: call it with the
whole current state whenever anything changed (and now and then to heal drift); it never
patches. `remove()` deletes the table (and the service route, if it added one).

`netns` names the network namespace the table lives in (a namespace file such as
/run/netns/NAME or /proc/PID/ns/net); None means the caller's own, which is where an agent of
`up` already lives. `route_device`, when given, makes the service CIDR routable through that
device, for namespaces with no default route (the nodes of `up`): without a route a host
process's connect() to a ClusterIP fails before the output hook can DNAT it, and a pod's packet
to a ClusterIP without endpoints is answered "no route" instead of being rejected.

Invariants: applies are serialized (one lock per data plane); an error raised carries nft's
own message; nothing else on the node is touched (no other table, no sysctl).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from nodeagent.services import render as renderer
from nodeagent.services.model import ProxyState
from nodeagent.services.nftables import delete_text

log = structlog.get_logger(__name__)

NFT_TIMEOUT_S = 60.0


class Step(enum.Enum):
    APPLY = "apply"
    REMOVE = "remove"
    LIST = "list"
    ROUTE = "route"


class DataPlaneError(Exception):
    """nft or ip failed; the message says which step and carries the tool's own words."""

    def __init__(self, step: Step, message: str) -> None:
        super().__init__(f"services data plane: {step.value} failed: {message}")
        self.step = step


@dataclass(frozen=True, slots=True)
class Programmed:
    """What one `program` call put in the kernel, and how long it took."""

    services: int
    chains: int
    rules: int
    elements: int
    seconds: float


class DataPlane:
    """One nftables table (`table ip pilothouse` by default) in one network namespace."""

    def __init__(
        self,
        *,
        netns: str | None = None,
        table: str = renderer.TABLE,
        route_device: str | None = None,
        mark: int = renderer.MASQUERADE_MARK,
        nft: str = "nft",
    ) -> None:
        self.netns = netns
        self.table = table
        self.route_device = route_device
        self.mark = mark
        self.nft = nft
        self._lock = asyncio.Lock()
        self._route: str | None = None  # the service CIDR this data plane routed

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", f"--net={self.netns}", "--"] if self.netns else []

    async def program(self, state: ProxyState) -> Programmed:
        """Replace the table with the one `state` renders, in one transaction."""
        started = time.perf_counter()
        table = renderer.render(state, table=self.table, mark=self.mark)
        async with self._lock:
            await self._run(Step.APPLY, [self.nft, "-f", "-"], stdin=table.replace_text())
            await self._ensure_route(state.node.service_cidr)
        done = Programmed(
            services=sum(1 for s in state.services if not s.headless),
            chains=len(table.chains),
            rules=table.rule_count,
            elements=table.element_count,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "services.programmed",
            table=self.table,
            services=done.services,
            rules=done.rules,
            elements=done.elements,
            ms=round(done.seconds * 1000, 1),
        )
        return done

    async def remove(self) -> None:
        """Delete the table and the service route (idempotent)."""
        async with self._lock:
            await self._run(
                Step.REMOVE, [self.nft, "-f", "-"], stdin=delete_text(renderer.FAMILY, self.table)
            )
            if self._route and self.route_device:
                await self._run(
                    Step.ROUTE,
                    ["ip", "route", "del", self._route, "dev", self.route_device],
                    check=False,
                )
                self._route = None
        log.info("services.removed", table=self.table)

    async def present(self) -> bool:
        """True while the table exists."""
        out = await self._run(Step.LIST, [self.nft, "list", "tables", renderer.FAMILY])
        return f"table {renderer.FAMILY} {self.table}" in out.splitlines()

    async def listing(self) -> str:
        """The table as the kernel has it (`nft list table`), for diagnostics."""
        return await self._run(Step.LIST, [self.nft, "list", "table", renderer.FAMILY, self.table])

    async def _ensure_route(self, service_cidr: str) -> None:
        if not self.route_device or not service_cidr:
            return
        if self._route and self._route != service_cidr:
            argv = ["ip", "route", "del", self._route, "dev", self.route_device]
            await self._run(Step.ROUTE, argv, check=False)
        argv = ["ip", "route", "replace", service_cidr, "dev", self.route_device]
        await self._run(Step.ROUTE, argv)
        self._route = service_cidr

    async def _run(
        self, step: Step, argv: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> str:
        command = [*self.prefix, *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise DataPlaneError(step, f"{command[0]} is not installed") from None
        try:
            async with asyncio.timeout(NFT_TIMEOUT_S):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DataPlaneError(
                step, f"{argv[0]} did not finish in {NFT_TIMEOUT_S:.0f} s"
            ) from None
        if check and proc.returncode != 0:
            raise DataPlaneError(step, _first_lines(err.decode(errors="replace")))
        return out.decode(errors="replace")


def _first_lines(text: str, limit: int = 12) -> str:
    lines = text.strip().splitlines()
    more = f"\n… ({len(lines) - limit} more lines)" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more

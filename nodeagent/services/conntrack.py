"""Connection tracking left behind by endpoints the data plane stopped choosing.

NAT happens on a connection's first packet only: later packets of the same conntrack entry
keep the endpoint chosen then. A client whose SYN to an endpoint got no answer (the endpoint's
node was cut off, or it stopped) leaves an unreplied entry for up to two minutes; when it
later reuses that source port for a new connection, the SYN matches the entry and goes to the
dead endpoint again, however the table changed. `forget(endpoints)` deletes, for endpoints no
longer in the table, the TCP entries that never saw an answer (SYN_SENT: no connection to
break) and every UDP entry (kube-proxy does the same for UDP), so the next packet is NATed
afresh.

Invariants: an established TCP connection is never touched (a draining pod's requests finish);
a missing `conntrack` tool (Debian's conntrack package) is reported once and otherwise
ignored; failures never stop programming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)

_FILTERS = (("-p", "tcp", "--state", "SYN_SENT"), ("-p", "udp"))


class Conntrack:
    def __init__(self, *, netns: str | None = None, tool: str = "conntrack") -> None:
        self.netns = netns
        self.tool = tool
        self._missing = False

    async def forget(self, endpoints: Iterable[str]) -> None:
        """Drop unanswered TCP and all UDP tracking towards `endpoints` (see the module)."""
        if self._missing:
            return
        prefix = ["nsenter", f"--net={self.netns}", "--"] if self.netns else []
        for address in sorted(set(endpoints)):
            for extra in _FILTERS:
                argv = [*prefix, self.tool, "-D", "--reply-src", address, *extra]
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *argv,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                except FileNotFoundError:
                    self._missing = True
                    log.warning(
                        "services.conntrack_missing",
                        note="install Debian's conntrack: without it a client reusing a port "
                        "may be sent to a removed endpoint for up to 2 minutes",
                    )
                    return
                await proc.wait()  # 1 when nothing matched: fine

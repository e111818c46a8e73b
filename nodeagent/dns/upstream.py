"""Forwarding of names outside the cluster to the node's own resolvers.

The resolvers are the `nameserver` lines of a resolv.conf file (the node's, normally
/etc/resolv.conf), re-read whenever the file changes. Each is tried in order with its own
timeout; the first answer wins, whatever its rcode (an NXDOMAIN from upstream is an answer).
`forward` returns None when there is no resolver or none answered, and the caller answers
SERVFAIL. A resolver that is this server itself is skipped, so a node whose resolv.conf
points at its own DNS never loops.

Queries go over UDP, or over TCP when the client asked over TCP (a client that got a
truncated UDP answer retries over TCP, and so does the forward).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import structlog

from nodeagent.dns import resolvconf

log = structlog.get_logger(__name__)

TIMEOUT_S = 2.0


class Failure(enum.Enum):
    NO_RESOLVERS = "no_resolvers"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An upstream answer, or why there is none (`response` None)."""

    response: dns.message.Message | None
    failure: Failure | None = None
    resolver: str = ""


class Upstream:
    """The node's resolvers from `resolv_conf`; `port` is 53 except in tests."""

    def __init__(
        self,
        resolv_conf: str | os.PathLike[str],
        *,
        port: int = 53,
        timeout_s: float = TIMEOUT_S,
        exclude: frozenset[tuple[str, int]] = frozenset(),
    ) -> None:
        self.path = Path(resolv_conf)
        self.port = port
        self.timeout_s = timeout_s
        self.exclude = exclude
        self._seen: tuple[int, int] | None = None
        self._resolvers: tuple[str, ...] = ()

    def resolvers(self) -> tuple[str, ...]:
        """The nameservers of the file as it is now (none when it is missing)."""
        try:
            stat = self.path.stat()
        except OSError:
            self._seen, self._resolvers = None, ()
            return ()
        mark = (stat.st_mtime_ns, stat.st_size)
        if mark != self._seen:
            try:
                parsed = resolvconf.parse(self.path.read_text(errors="replace"))
            except OSError:
                return ()
            self._seen = mark
            self._resolvers = tuple(
                ns.split("%", 1)[0]
                for ns in parsed.nameservers
                if (ns.split("%", 1)[0], self.port) not in self.exclude
            )
        return self._resolvers

    async def forward(self, query: dns.message.Message, *, tcp: bool) -> Forwarded:
        resolvers = self.resolvers()
        if not resolvers:
            return Forwarded(None, Failure.NO_RESOLVERS)
        for resolver in resolvers:
            try:
                if tcp:
                    response = await dns.asyncquery.tcp(
                        query, resolver, timeout=self.timeout_s, port=self.port
                    )
                else:
                    response = await dns.asyncquery.udp(
                        query, resolver, timeout=self.timeout_s, port=self.port
                    )
            except (OSError, dns.exception.DNSException, EOFError) as error:
                log.debug("dns.upstream_failed", resolver=resolver, error=str(error))
                continue
            return Forwarded(response, resolver=resolver)
        return Forwarded(None, Failure.UNREACHABLE)

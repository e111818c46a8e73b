"""Which node names a join token may get a certificate for: the rules against node takeover.

A token proves its holder may join *a* node; it does not make them the owner of a name that
is taken. A join for node NAME with a valid token is admitted when:
- no Node NAME exists (a new node), or
- Node NAME has been NotReady (Ready Unknown: heartbeats stopped) for longer than the rejoin
  grace period (the machine is gone; `--node-rejoin-grace`, default 5 min);
otherwise (the node is alive, or was NotReady only a moment ago, or was revoked with
`pilothouse node revoke`) only with an admin's approval: `pilothouse node approve NAME`, or a
token created with `pilothouse token create --for-node NAME` (the approval said in advance).

Invariants: `decide` is a pure function of the Node, the revocation, the token's binding and
the time; `NodeAccessRules` only reads the store for them and spends approvals. A freeze of a
live agent for a few seconds (the attack in issue 11) never opens its name to a token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controlplane.auth.approvals import Approvals
from controlplane.auth.revocations import Reason, Revocation, Revocations
from controlplane.nodes import conditions
from controlplane.nodes.conditions import ReadyStatus
from controlplane.objects import ObjectStore
from controlplane.store import NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

DEFAULT_REJOIN_GRACE = 300.0

# Reads Node NAME from the store (None: no such Node).
NodeLookup = Callable[[str], Awaitable[objects_pb2.Node | None]]


def node_lookup(objects: ObjectStore) -> NodeLookup:
    """A NodeLookup over the object store."""

    async def lookup(name: str) -> objects_pb2.Node | None:
        try:
            found = await objects.get(Kind.NODE, "", name)
        except NotFound:
            return None
        return found if isinstance(found, objects_pb2.Node) else None

    return lookup


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    needs_approval: bool = False
    bound: bool = False  # the token was made for this node (it is the approval)
    reason: str = ""

    @classmethod
    def allowed(cls) -> Admission:
        return cls(ok=True)


def decide(
    *,
    name: str,
    node: objects_pb2.Node | None,
    revocation: Revocation | None,
    bound: bool,
    approved: bool,
    now: float,
    grace: float,
) -> Admission:
    """Whether a token join for `name` is admitted (see the module docstring)."""
    why = _taken(name, node, revocation, now=now, grace=grace)
    if why is None:
        return Admission(ok=True)
    if bound or approved:
        return Admission(ok=True, needs_approval=True, bound=bound)
    return Admission(
        ok=False,
        needs_approval=True,
        reason=f"{why}; a join token alone cannot take it over: approve it with "
        f"`pilothouse node approve {name}` or join with a token from "
        f"`pilothouse token create --for-node {name}`",
    )


def _taken(
    name: str,
    node: objects_pb2.Node | None,
    revocation: Revocation | None,
    *,
    now: float,
    grace: float,
) -> str | None:
    if revocation is not None and revocation.reason is Reason.REVOKED and not revocation.rejoined:
        return f'node "{name}" was revoked'
    if node is None:
        return None
    status = conditions.ready_status(node)
    since = conditions.transition_time(node)
    if status is ReadyStatus.UNKNOWN and since is not None:
        silent = now - since
        if silent >= grace:
            return None
        return (
            f'node "{name}" exists and has been NotReady for only {silent:.0f} s (less than '
            f"the rejoin grace period of {grace:.0f} s)"
        )
    if status is ReadyStatus.TRUE:
        return f'node "{name}" exists and is Ready'
    return f'node "{name}" exists and its agent is registered'


class NodeAccessRules:
    """The rules above over the store, plus what a join changes: approvals spent, the deny
    list told that a revoked node holds a new certificate."""

    def __init__(
        self,
        *,
        revocations: Revocations,
        approvals: Approvals,
        lookup: NodeLookup,
        grace: float = DEFAULT_REJOIN_GRACE,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.revocations = revocations
        self.approvals = approvals
        self._lookup = lookup
        self._grace = grace
        self._now = now

    async def admit(self, name: str, *, bound: bool) -> Admission:
        node = await self._lookup(name)
        revocation = self.revocations.get(name)
        first = decide(
            name=name,
            node=node,
            revocation=revocation,
            bound=bound,
            approved=False,
            now=self._now(),
            grace=self._grace,
        )
        if first.ok or bound:
            return first
        if await self.approvals.valid(name):
            return Admission(ok=True, needs_approval=True)
        return first

    async def take_approval(self, name: str) -> bool:
        return await self.approvals.take(name)

    async def node_exists(self, name: str) -> bool:
        return await self._lookup(name) is not None

    async def wait_past_revocation(self, name: str) -> None:
        await self.revocations.wait_past(name)

    async def rejoined(self, name: str) -> None:
        if self.revocations.get(name) is not None:
            await self.revocations.rejoined(name)

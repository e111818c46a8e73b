"""The per-RPC policy: which identity may call which method, on which node.

Rules, first match wins:
0. A node certificate on the deny list (`controlplane.auth.revocations`: `node revoke`, or its
   Node deleted) is UNAUTHENTICATED on every call, Join included.
1. `Join.*`: anyone, also without a certificate (the servicer checks the token).
2. No client certificate: UNAUTHENTICATED.
3. Admin (`O=system:masters`): everything.
4. A node (`CN=system:node:<name>`, `O=system:nodes`): only the node-scoped methods
   (`NODE_SCOPED`: RegisterNode, Heartbeat, and whatever is added there), and only for its own
   node name as the request names it; the node-scoped streams (`NODE_STREAMS`: Heartbeats)
   are let through and their servicer checks each message with `decide_node`; anything else
   PERMISSION_DENIED.
5. Every other identity (the control plane's own client identity included): PERMISSION_DENIED.

What a node certificate can and cannot do, by design:
- It can call no ControlPlane method at all (no Apply, Delete, Get, List, Watch, PodLogs …),
  no Tokens method, and NodeRegistry only for its own node name (rule 4).
- Pod status is never written by agents: the control plane's node syncer opens WatchPods to
  the agent itself, over mutual TLS, requiring the agent's certificate to name the node it
  syncs (`controlplane.nodes.agent`), and writes a pod's status only while that pod is bound
  to that node (`controlplane.nodes.syncer`). So "a node can report only the pods bound to
  it" holds without a status RPC to authorize; a future agent-side status RPC must be added
  to NODE_SCOPED with the pod's node read from the store, not from the request.
- Agents in turn admit only the control plane's own client identity (`pki.CONTROLPLANE`) on
  their NodeAgent server (`pilothouse.credentials.require_identity`).

Invariants: the decision is a pure function (`Authorizer.decide`) over the identity, the method
and the request, so it is tested without a server; the interceptor only reads the identity,
asks, and aborts; every refusal is logged as `auth.denied` with identity= and method=.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from controlplane.auth.revocations import Revocations
from pilothouse import credentials, pki
from pilothouse.pki import Role

log = structlog.get_logger(__name__)

JOIN_PREFIX = "/pilothouse.v1.Join/"

# Methods a node may call, each with how to read the node name from its request.
NODE_SCOPED: Mapping[str, Callable[[Any], str]] = {
    "/pilothouse.v1.NodeRegistry/RegisterNode": lambda request: request.node.metadata.name,
    "/pilothouse.v1.NodeRegistry/Heartbeat": lambda request: request.node_name,
}
# Streams of node-scoped messages: the call is let through for a node, and the servicer checks
# every message with `decide_node` (a stream has no single request to check here).
NODE_STREAMS = frozenset({"/pilothouse.v1.NodeRegistry/Heartbeats"})


class Outcome(enum.Enum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


_ALLOW = Decision(Outcome.ALLOWED)


class Authorizer:
    """The policy above; `node_scoped` extends or replaces NODE_SCOPED (e.g. a method for
    reporting pod status, with how to read the pod's node from its request)."""

    def __init__(self, node_scoped: Mapping[str, Callable[[Any], str]] = NODE_SCOPED) -> None:
        self._node_scoped = dict(node_scoped)

    def decide(self, identity: pki.Identity | None, method: str, request: Any) -> Decision:
        if method.startswith(JOIN_PREFIX):
            return _ALLOW
        if identity is None:
            return Decision(
                Outcome.UNAUTHENTICATED,
                "this call needs a client certificate signed by the cluster CA (use the admin "
                "config the control plane wrote, or join the node with a token)",
            )
        role = identity.role
        if role is Role.ADMIN:
            return _ALLOW
        if role is Role.NODE:
            name_of = self._node_scoped.get(method)
            if name_of is None and method in NODE_STREAMS and request is None:
                return _ALLOW  # each message checked by the servicer (decide_node)
            if name_of is None:
                return Decision(
                    Outcome.FORBIDDEN, f"node {identity.node_name!r} may not call {method}"
                )
            if request is None:
                return Decision(Outcome.FORBIDDEN, f"{method} cannot be checked for a node")
            return self.decide_node(identity, name_of(request), method=method)
        return Decision(Outcome.FORBIDDEN, f"{identity} may not call {method}")

    @staticmethod
    def decide_node(identity: pki.Identity | None, node_name: str, *, method: str) -> Decision:
        """Object-level check: a node may act only on itself (admins on any node)."""
        if identity is None:
            return Decision(Outcome.UNAUTHENTICATED, "a client certificate is required")
        if identity.role is Role.ADMIN or identity.node_name == node_name:
            return _ALLOW
        return Decision(
            Outcome.FORBIDDEN,
            f"node {identity.node_name!r} may not call {method} for node {node_name!r}"
            if identity.node_name
            else f"{identity} may not call {method} for node {node_name!r}",
        )

    def interceptor(
        self, *, revocations: Revocations | None = None
    ) -> credentials.GuardInterceptor:
        """The guard of a server: `decide`, and first, for a node's certificate, the deny
        list (`revocations`, in memory): a revoked or deleted node's certificate is refused
        on every call, whatever the method."""

        async def check(context: grpc.aio.ServicerContext, method: str, request: Any) -> None:
            identity = credentials.peer_identity(context)
            if revocations is not None and (node := node_certificate(context)) is not None:
                name, issued_at = node
                revoked = revocations.refused(name, issued_at=issued_at)
                if revoked is not None:
                    await deny(
                        context,
                        Decision(Outcome.UNAUTHENTICATED, revoked.describe()),
                        identity=identity,
                        method=method,
                    )
            decision = self.decide(identity, method, request)
            if not decision.allowed:
                await deny(context, decision, identity=identity, method=method)

        return credentials.GuardInterceptor(check)


def node_certificate(context: grpc.aio.ServicerContext) -> tuple[str, float] | None:
    """The calling node's name and when its certificate was issued (what the deny list
    covers), or None for a caller that is not a node."""
    identity = credentials.peer_identity(context)
    if identity is None or not identity.node_name:
        return None
    cert = credentials.peer_certificate(context)
    return (identity.node_name, pki.issued_at(cert).timestamp()) if cert is not None else None


async def deny(
    context: grpc.aio.ServicerContext,
    decision: Decision,
    *,
    identity: pki.Identity | None,
    method: str,
) -> None:
    """Log the refusal and abort the call with its status."""
    log.warning(
        "auth.denied",
        identity=str(identity) if identity else "anonymous",
        method=method,
        reason=decision.reason,
    )
    code = (
        grpc.StatusCode.UNAUTHENTICATED
        if decision.outcome is Outcome.UNAUTHENTICATED
        else grpc.StatusCode.PERMISSION_DENIED
    )
    await context.abort(code, decision.reason)


async def require_node(context: grpc.aio.ServicerContext, node_name: str, *, method: str) -> None:
    """For servicers: abort unless the caller is admin or the node `node_name` itself (e.g. a
    pod status report for a pod bound to `node_name`). Without TLS there is no identity to
    check, so callers only use this when the server runs secure."""
    identity = credentials.peer_identity(context)
    decision = Authorizer.decide_node(identity, node_name, method=method)
    if not decision.allowed:
        await deny(context, decision, identity=identity, method=method)

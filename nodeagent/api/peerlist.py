"""The node list this agent last took from the control plane, whole or as changes.

Role: SyncPods brings the node list (every node's address and pod CIDR, which the agent routes
to) either whole (`peers_included`) or, once the list is large, as the changes since a version
the agent holds (`peers_changes`). `PeerList` keeps the list and its version and turns either
form into the whole list the routes are made from.

Invariant: changes are applied only on top of the version they were made from; otherwise the
list is left as it was and the answer says why (the control plane then pushes it whole), so
the agent never routes by a list that mixes two histories. Without routes to make (`keep`
False: a hollow node, `--pod-routes none`) only the version is kept, not the list.
"""

from __future__ import annotations

from nodeagent.network.routes import Peer
from pilothouse.v1 import agent_pb2


class PeerList:
    """The node list and its version (0: none received yet)."""

    def __init__(self, *, keep: bool = True) -> None:
        self.version = 0
        self._keep = keep
        self._peers: dict[str, Peer] = {}

    def take(self, request: agent_pb2.SyncPodsRequest) -> list[Peer] | str | None:
        """The whole list after `request` (None: it brings none; a str: why its changes
        cannot be applied)."""
        if not (request.peers_included or request.peers_changes):
            return None
        if not self._keep:
            if request.peers_changes and request.peers_base != self.version:
                return f"node list changes from version {request.peers_base}, not {self.version}"
            self.version = request.peers_version
            return None
        pushed = [Peer(name=p.name, address=p.address, pod_cidr=p.pod_cidr) for p in request.peers]
        if request.peers_included:
            self._peers = {p.name: p for p in pushed}
        elif request.peers_changes:
            if not self.version or request.peers_base != self.version:
                return (
                    f"node list changes from version {request.peers_base}, this node holds "
                    f"version {self.version}: the whole list is needed"
                )
            for name in request.peers_removed:
                self._peers.pop(name, None)
            self._peers.update((p.name, p) for p in pushed)
        self.version = request.peers_version
        return sorted(self._peers.values(), key=lambda p: p.name)

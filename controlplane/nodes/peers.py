"""The node list every agent routes by: each node's address and pod CIDR (`PeersState`).

Agents make the routes to the other nodes' pods themselves (nodeagent.network.routes) from
this list, which node sync pushes with the pods: with the first push of a session, after every
change of the list, and with each periodic resync. So a node that joins is routed to by every
other node within a push, and one that is deleted stops being routed to.

Vocabulary: a *peer* is a Node with an InternalIP and a `spec.podCIDR`; nodes without either
(not registered with a pod network) are not in the list. A node that is NotReady stays in it:
its routes are harmless while it is away, and right again the moment it is back.

`PeersView` builds the state from the Node informer, again only when a node's name, address
or pod CIDR changed (heartbeats and condition changes are no change), and then calls
`on_change` (the manager pokes every syncer). `version` grows with each change.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.cache.informer import Informer, Notice
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True, order=True)
class Peer:
    name: str
    address: str
    pod_cidr: str


@dataclass(frozen=True, slots=True)
class PeersState:
    version: int
    peers: tuple[Peer, ...]


class PeersView:
    """The current `PeersState`, from the Node informer (which must also run)."""

    def __init__(self, *, nodes: Informer, on_change: Callable[[], None] = lambda: None) -> None:
        self._nodes = nodes
        self._versions = itertools.count(1)
        self._state: PeersState | None = None
        self.on_change = on_change
        nodes.add_handler(self._changed)

    @property
    def synced(self) -> bool:
        return self._nodes.has_synced

    async def wait_synced(self) -> None:
        await self._nodes.wait_synced()

    def _peers(self) -> tuple[Peer, ...]:
        found = []
        for node in self._nodes.list():
            address = internal_ip(node)
            if address and node.spec.pod_cidr:
                found.append(Peer(node.metadata.name, address, node.spec.pod_cidr))
        return tuple(sorted(found))

    def _changed(self, notice: Notice) -> None:
        if self._state is not None and self._peers() == self._state.peers:
            return
        self._state = None
        self.on_change()

    def current(self) -> PeersState:
        if self._state is None:
            self._state = PeersState(version=next(self._versions), peers=self._peers())
        return self._state


def internal_ip(node: objects_pb2.Node) -> str:
    """The node's InternalIP ("" while it has none)."""
    return next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")

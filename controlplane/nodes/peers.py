"""The node list every agent routes by: each node's address and pod CIDR (`PeersState`).

Agents make the routes to the other nodes' pods themselves (nodeagent.network.routes) from
this list, which node sync pushes with the pods: whole with the first push of a session (and
when an agent could not take a change), and as its changes (`PeersView.changes`) after that
once the list is large. So a node that joins is routed to by every other node within a push,
and one that is deleted stops being routed to.

Vocabulary: a *peer* is a Node with an InternalIP and a `spec.podCIDR`; nodes without either
(not registered with a pod network) are not in the list. A node that is NotReady stays in it:
its routes are harmless while it is away, and right again the moment it is back.

`PeersView` keeps the list from the Node informer's notices, one node at a time (a heartbeat or
a condition change is no change), with `version` growing by one per change and the names
changed at each version (the last `HISTORY` of them). It calls `on_change` (the manager pokes
every syncer) once per `coalesce(n)` seconds at most, however many nodes joined meanwhile: a
wave of N joins costs about N pushes per period, not N per join.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.cache.informer import Informer, Notice
from controlplane.objects import ChangeType
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


@dataclass(frozen=True, slots=True)
class PeerChanges:
    """The node list's changes from version `base` to `version`."""

    base: int
    version: int
    changed: tuple[Peer, ...]  # added, or with a new address or pod CIDR
    removed: tuple[str, ...]  # names


HISTORY = 100_000  # changes remembered for `changes()`; an older base gets the whole list


def coalesce(peers: int) -> float:
    """Seconds between node-list notices: 15 ms at 3 nodes, 0.5 s at 100, 5 s from 1,000."""
    return min(5.0, 0.005 * peers)


class PeersView:
    """The current `PeersState` and its changes, from the Node informer (which must also run)."""

    def __init__(self, *, nodes: Informer, on_change: Callable[[], None] = lambda: None) -> None:
        self._nodes = nodes
        self._peers: dict[str, Peer] = {}
        self._version = 0
        self._history: deque[tuple[int, str]] = deque(maxlen=HISTORY)  # (version, node name)
        self._state: PeersState | None = None
        self._notice: asyncio.TimerHandle | None = None
        self.on_change = on_change
        nodes.add_handler(self._changed)

    @property
    def synced(self) -> bool:
        return self._nodes.has_synced

    async def wait_synced(self) -> None:
        await self._nodes.wait_synced()

    def _changed(self, notice: Notice) -> None:
        node = notice.object
        name = node.metadata.name
        address = internal_ip(node)
        peer = None
        if notice.type is not ChangeType.DELETED and address and node.spec.pod_cidr:
            peer = Peer(name, address, node.spec.pod_cidr)
        if self._peers.get(name) == peer:
            return
        if peer is None:
            del self._peers[name]
        else:
            self._peers[name] = peer
        self._version += 1
        self._history.append((self._version, name))
        self._state = None
        self._notify()

    def _notify(self) -> None:
        if self._notice is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a list built outside one): tell at once
            self.on_change()
            return
        self._notice = loop.call_later(coalesce(len(self._peers)), self._tell)

    def _tell(self) -> None:
        self._notice = None
        self.on_change()

    def current(self) -> PeersState:
        if self._state is None:
            self._state = PeersState(
                version=self._version, peers=tuple(sorted(self._peers.values()))
            )
        return self._state

    def changes(self, since: int) -> PeerChanges | None:
        """What changed after version `since` (None: that is older than the history kept)."""
        if since > self._version or since < 1:
            return None
        if since < self._version and (not self._history or self._history[0][0] > since + 1):
            return None
        names = set()
        for version, name in reversed(self._history):
            if version <= since:
                break
            names.add(name)
        return PeerChanges(
            base=since,
            version=self._version,
            changed=tuple(sorted(self._peers[n] for n in names if n in self._peers)),
            removed=tuple(sorted(n for n in names if n not in self._peers)),
        )


def internal_ip(node: objects_pb2.Node) -> str:
    """The node's InternalIP ("" while it has none)."""
    return next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")

"""The agent's node list (`nodeagent.api.peerlist.PeerList`): taken whole or as changes from
the version it holds; changes from any other version (or before any whole list) change nothing
and say why; without routes to make only the version is kept.
"""

from __future__ import annotations

from nodeagent.api.peerlist import PeerList
from pilothouse.v1 import agent_pb2


def _peer(name: str, last: int) -> agent_pb2.PeerNode:
    return agent_pb2.PeerNode(name=name, address=f"10.0.0.{last}", pod_cidr=f"10.244.{last}.0/24")


def whole(version: int, *names: str) -> agent_pb2.SyncPodsRequest:
    peers = [_peer(n, i + 1) for i, n in enumerate(names)]
    return agent_pb2.SyncPodsRequest(peers_included=True, peers=peers, peers_version=version)


def changes(base: int, version: int, changed=(), removed=()) -> agent_pb2.SyncPodsRequest:  # type: ignore[no-untyped-def]
    return agent_pb2.SyncPodsRequest(
        peers_changes=True,
        peers_base=base,
        peers_version=version,
        peers=[_peer(n, 50 + i) for i, n in enumerate(changed)],
        peers_removed=list(removed),
    )


def test_whole_then_changes_then_refusals() -> None:
    held = PeerList()
    assert held.take(agent_pb2.SyncPodsRequest()) is None, "a push without a list"
    refused = held.take(changes(0, 1, ["a"]))
    assert isinstance(refused, str) and "whole list is needed" in refused
    assert held.version == 0

    taken = held.take(whole(4, "a", "b", "c"))
    assert [p.name for p in taken] == ["a", "b", "c"] and held.version == 4  # type: ignore[union-attr]
    taken = held.take(changes(4, 6, changed=["d", "a"], removed=["b", "nobody"]))
    assert [(p.name, p.address) for p in taken] == [  # type: ignore[union-attr]
        ("a", "10.0.0.51"),
        ("c", "10.0.0.3"),
        ("d", "10.0.0.50"),
    ]
    assert held.version == 6

    refused = held.take(changes(5, 7, changed=["e"]))
    assert isinstance(refused, str) and "version 5" in refused and "version 6" in refused
    assert held.version == 6
    assert [p.name for p in held.take(whole(9, "x"))] == ["x"]  # type: ignore[union-attr]


def test_without_routes_only_the_version_is_kept() -> None:
    held = PeerList(keep=False)
    assert held.take(whole(3, "a", "b")) is None and held.version == 3
    assert held.take(changes(3, 4, changed=["c"])) is None and held.version == 4
    assert isinstance(held.take(changes(2, 5)), str) and held.version == 4

"""Pod CIDR allocation: each Node gets a block of the cluster CIDR for its pods' addresses.

Vocabulary: the *cluster CIDR* (default 10.244.0.0/16) is split into *blocks* of one size
(default /24, 254 pods per node); a node's *pod CIDR* is its block (`Node.spec.podCIDR`), or a
range its agent brought along (`--pod-cidr`).

Invariants:
- allocation is a pure function of the pod CIDRs the stored Nodes hold (no counter, no state
  of its own), so a restarted control plane allocates exactly as before and never hands out a
  range that a Node already has;
- the lowest free block is chosen, so the same registrations in the same order always get the
  same blocks (node-1 10.244.0.0/24, node-2 10.244.1.0/24, … on a fresh cluster);
- a range an agent asks for is granted only if it overlaps no other Node's pod CIDR; it may lie
  outside the cluster CIDR (an operator's choice), but never overlap a neighbour's;
- two Nodes never hold overlapping pod CIDRs through this module: the caller serializes
  choice and write (see `controlplane.nodes.registry`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_MASK = 24


class PodCidrError(Exception):
    """No pod CIDR can be given to a node; the message says why and what to do."""


class InvalidCidr(PodCidrError, ValueError):
    """A CIDR that is not an IPv4 network address with a prefix length."""


class CidrTaken(PodCidrError):
    """The range an agent asked for overlaps another node's pod CIDR."""


class CidrExhausted(PodCidrError):
    """Every block of the cluster CIDR belongs to a node."""


def parse(text: str, *, what: str = "pod CIDR") -> ipaddress.IPv4Network:
    """An IPv4 network such as "10.244.3.0/24" (host bits must be zero)."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        raise InvalidCidr(
            f'{what} "{text}" is not a network such as 10.244.0.0/24: {error}'
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise InvalidCidr(f'{what} "{text}" is IPv6; pod networks are IPv4 only')
    return network


def same_network(a: str, b: str) -> bool:
    """Whether two CIDRs name the same network (as written, when one does not parse)."""
    try:
        return parse(a) == parse(b)
    except InvalidCidr:
        return a.strip() == b.strip()


@dataclass(frozen=True, slots=True)
class Allocator:
    """Chooses a node's pod CIDR from the cluster CIDR, given the other nodes' ones."""

    cluster_cidr: ipaddress.IPv4Network
    node_mask: int = DEFAULT_NODE_MASK

    @classmethod
    def of(
        cls, cluster_cidr: str = DEFAULT_CLUSTER_CIDR, *, node_mask: int = DEFAULT_NODE_MASK
    ) -> Allocator:
        network = parse(cluster_cidr, what="cluster CIDR")
        if not network.prefixlen <= node_mask <= 30:
            raise InvalidCidr(
                f"cluster CIDR {network} cannot be split into /{node_mask} blocks: the node "
                f"mask must lie between /{network.prefixlen} and /30"
            )
        return cls(cluster_cidr=network, node_mask=node_mask)

    @property
    def capacity(self) -> int:
        """How many nodes the cluster CIDR has blocks for."""
        return 2 ** (self.node_mask - self.cluster_cidr.prefixlen)

    def choose(self, node: str, *, requested: str = "", taken: Mapping[str, str]) -> str:
        """The pod CIDR for `node`: `requested` if it is free, else the lowest free block.

        `taken` maps every other node's name to its pod CIDR (empty values are ignored; a
        malformed stored value is skipped, it cannot be handed out anyway).
        """
        others = _networks(taken, skip=node)
        if requested:
            wanted = parse(requested)
            low, high = _span(wanted)
            for owner, network in others:
                start, end = _span(network)
                if start <= high and low <= end:
                    raise CidrTaken(
                        f'pod CIDR {wanted} asked for by node "{node}" overlaps {network} of '
                        f'node "{owner}"; start its agent with a free --pod-cidr, or without '
                        "one to get a block of the cluster CIDR "
                        f"{self.cluster_cidr}"
                    )
            return str(wanted)
        # The lowest block past every held range it would overlap: one walk over the held
        # ranges in order, in integers (comparing ipaddress objects cost O(blocks x nodes)).
        size = 2 ** (32 - self.node_mask)
        candidate, last = _span(self.cluster_cidr)
        for start, end in sorted(_span(network) for _, network in others):
            if end < candidate:
                continue
            if start > candidate + size - 1:
                break
            candidate = (end // size + 1) * size
        if candidate + size - 1 <= last:
            return f"{ipaddress.IPv4Address(candidate)}/{self.node_mask}"
        raise CidrExhausted(
            f"no free /{self.node_mask} left in the cluster CIDR {self.cluster_cidr} for node "
            f'"{node}" ({self.capacity} blocks, all held by nodes); delete nodes that are gone '
            "or start the control plane with a larger --cluster-cidr"
        )


def _networks(taken: Mapping[str, str], *, skip: str) -> list[tuple[str, ipaddress.IPv4Network]]:
    found = []
    for owner, text in sorted(taken.items()):
        if owner == skip or not text:
            continue
        network = _parsed(text)
        if network is not None:
            found.append((owner, network))
    return found


@functools.lru_cache(maxsize=16_384)
def _parsed(text: str) -> ipaddress.IPv4Network | None:
    """A stored pod CIDR, parsed once (every registration looks at every node's)."""
    try:
        return parse(text)
    except InvalidCidr:
        return None


def _span(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """The first and last address of `network`, as integers."""
    start = int(network.network_address)
    return start, start + network.num_addresses - 1

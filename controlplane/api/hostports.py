"""The host ports no pod may take: the cluster's own, for `ClusterPolicy.reserved_host_ports`.

Which ports (issue 11, item 5):
- `DEFAULT_RESERVED`: the well-known defaults (the API's 7070, the join port and the agent's
  7071, the systemd agent's 7080, etcd's 2379/2380, the registry's 5000), reserved even where a
  cluster runs elsewhere, so a manifest's hostPort means the same on every cluster;
- what the control plane was told (`--reserved-host-ports`, e.g. `up` adds its registry's);
- the ports this control plane bound (API, join, etcd, metrics …: `add` once they are known);
- every node agent's port as its Node reports it (`status.daemonEndpoints.kubeletEndpoint`),
  read from the store when an object with a hostPort is applied. The scheduler treats each
  node's own agent port as taken too (`scheduler.filters.host_ports`), for a node that
  registers after the pod was applied.

Invariant: `policy` returns the policy unchanged for objects without hostPorts, so the store
is read only for the rare object that asks for one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from google.protobuf.message import Message

from controlplane.objects import ObjectStore
from pilothouse.kinds import Kind
from pilothouse.manifests.validation.policy import ClusterPolicy, has_host_ports
from pilothouse.v1 import objects_pb2

DEFAULT_RESERVED = frozenset({2379, 2380, 5000, 7070, 7071, 7080})


class ReservedPorts:
    def __init__(self, objects: ObjectStore, *, static: Iterable[int] = ()) -> None:
        self._objects = objects
        self._static = set(DEFAULT_RESERVED) | {p for p in static if p > 0}

    def add(self, *ports: int) -> None:
        """Ports this control plane serves on, once they are bound."""
        self._static.update(p for p in ports if p > 0)

    async def node_ports(self) -> set[int]:
        listing = await self._objects.list(Kind.NODE)
        return {
            node.status.daemon_endpoints.kubelet_endpoint.port
            for node in listing.items
            if isinstance(node, objects_pb2.Node)
            and node.status.daemon_endpoints.kubelet_endpoint.port > 0
        }

    async def policy(self, policy: ClusterPolicy, message: Message) -> ClusterPolicy:
        """`policy` with the reserved ports filled in, for validating `message`."""
        if not has_host_ports(message):
            return policy
        reserved = policy.reserved_host_ports | self._static | await self.node_ports()
        return dataclasses.replace(policy, reserved_host_ports=frozenset(reserved))


def port_of(address: str) -> int:
    """The port of "HOST:PORT" (0 when there is none)."""
    port = address.rpartition(":")[2]
    return int(port) if port.isdigit() else 0

"""Node hosts: where a local agent runs, and the address it has there.

A `NodeHost` turns an agent's argv into the command that starts it on that host, says which
address the agent listens on and reports, and how that host reaches a service that runs on
the machine (the registry, the control plane). A `NodeNetwork` makes the hosts of a cluster
and removes them again, by the cluster's name alone (after a crash `down` has nothing else).

Today every node shares the machine's network (`SharedNetwork`): address 127.0.0.1, commands
unchanged, nothing to make. For the cluster issue (#7), `pilothouse.hosts.HostNetwork` gives
each node a network namespace on a bridge; its `NodeHost` already has this shape (`command`
prefixes nsenter, `reach` maps loopback to the bridge address), so a `NodeNetwork` over it
is the one change `up` and `down` need, plus `service_host` (the address the registry and
control plane listen on so nodes can reach them: the bridge's, instead of loopback).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class NodeHost(Protocol):
    @property
    def name(self) -> str:
        """The node's name, e.g. "node-1"."""
        ...

    @property
    def address(self) -> str:
        """The node's IP: the agent listens on it and reports it as its hostIP."""
        ...

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` (a long-lived agent) on this host."""
        ...

    def reach(self, address: str) -> str:
        """How this host reaches "HOST:PORT" of a service started on the machine."""
        ...


class NodeNetwork(Protocol):
    @property
    def service_host(self) -> str:
        """The address services on the machine listen on, so that every node reaches them."""
        ...

    def create(self, cluster: str, nodes: Sequence[str]) -> Sequence[NodeHost]:
        """Make (or complete) one host per node, in order (idempotent)."""
        ...

    def destroy(self, cluster: str) -> None:
        """Remove every host of `cluster` and what runs in it (idempotent, after a crash too)."""
        ...


class SharedHost:
    """A node on the machine's own network: loopback address, commands unchanged."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return "127.0.0.1"

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def reach(self, address: str) -> str:
        return address


class SharedNetwork:
    """Every node on the machine's network: nothing to create or remove."""

    @property
    def service_host(self) -> str:
        return "127.0.0.1"

    def create(self, cluster: str, nodes: Sequence[str]) -> list[SharedHost]:
        return [SharedHost(name) for name in nodes]

    def destroy(self, cluster: str) -> None:
        return None


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]

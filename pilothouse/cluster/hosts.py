"""Node hosts: where a local agent runs, and the address it has there.

A `NodeHost` turns an agent's argv into the command that starts it on that host and says
which address the agent listens on and reports, and how that host reaches a service that
runs on the machine (the registry, the control plane).

Today every node shares the machine's network (`SharedHost`): address 127.0.0.1, commands
unchanged. The cluster issue (#7) adds a host per network namespace: `command` prefixes
`ip netns exec NS`, `address` is the node's address on the cluster bridge, `reach` gives the
bridge-side address of a service, and `create`/`remove` make and remove the namespace, veth
and bridge port. `up` and `down` only call this interface, so that change stays here.

Invariant: `remove` is idempotent and works from the node's name alone (after a crash `down`
has nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class NodeHost(Protocol):
    name: str  # the node's name, e.g. "node-1"

    @property
    def address(self) -> str:
        """The node's IP: the agent listens on it and reports it as its hostIP."""
        ...

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` on this host."""
        ...

    def reach(self, address: str) -> str:
        """How this host reaches "HOST:PORT" of a service started on the machine."""
        ...

    def create(self) -> None:
        """Make the host ready to run an agent (idempotent)."""
        ...

    def remove(self) -> None:
        """Remove whatever `create` made (idempotent, also after a crash)."""
        ...


class SharedHost:
    """A node on the machine's own network: loopback address, nothing to create."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def address(self) -> str:
        return "127.0.0.1"

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def reach(self, address: str) -> str:
        return address

    def create(self) -> None:
        return None

    def remove(self) -> None:
        return None


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]

"""Joining a node to the cluster and keeping its certificate fresh (the agent's side):
`handshake` is the exchange with the control plane (CA pinned by hash, CSR signed for a
token or over mutual TLS), `certificates` the node's files and their renewal.
"""

from nodeagent.join.certificates import NodeCertificates
from nodeagent.join.handshake import (
    DEFAULT_TIMEOUT,
    JoinError,
    NodeCredentials,
    discover_ca,
    join,
    presented_chain,
    renew,
    trusted_ca,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "JoinError",
    "NodeCertificates",
    "NodeCredentials",
    "discover_ca",
    "join",
    "presented_chain",
    "renew",
    "trusted_ca",
]

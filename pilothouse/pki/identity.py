"""Who a client certificate says you are: its subject CN is the user, its O values the groups.

Invariant: a `Role` is derived from the groups (and, for nodes and the control plane, the
user) alone; nothing here trusts a certificate, the TLS layer verified it before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography is imported by `Identity.of`, the one place that reads it
    from cryptography import x509

SERVER_NAME = "pilothouse-controlplane"
ADMIN_USER = "admin"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
CONTROLPLANE_USER = "pilothouse-controlplane"
CONTROLPLANE_GROUP = "system:controlplane"


class Role(enum.Enum):
    ADMIN = "admin"
    NODE = "node"
    CONTROLPLANE = "controlplane"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified client certificate names."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def role(self) -> Role:
        if MASTERS_GROUP in self.groups:
            return Role.ADMIN
        if NODES_GROUP in self.groups and self.user.startswith(NODE_USER_PREFIX):
            return Role.NODE
        if CONTROLPLANE_GROUP in self.groups and self.user == CONTROLPLANE_USER:
            return Role.CONTROLPLANE
        return Role.OTHER

    @property
    def node_name(self) -> str | None:
        """The node this identity is, for a node certificate; otherwise None."""
        if self.role is Role.NODE:
            return self.user.removeprefix(NODE_USER_PREFIX)
        return None

    def __str__(self) -> str:
        groups = ",".join(self.groups)
        return f"{self.user} ({groups})" if groups else self.user

    @classmethod
    def of(cls, cert: x509.Certificate | x509.CertificateSigningRequest) -> Identity:
        from cryptography.x509.oid import NameOID

        subject = cert.subject
        names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        groups = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return cls(
            user=str(names[0].value) if names else "",
            groups=tuple(str(g.value) for g in groups),
        )


def node_identity(node_name: str) -> Identity:
    return Identity(user=NODE_USER_PREFIX + node_name, groups=(NODES_GROUP,))


ADMIN = Identity(user=ADMIN_USER, groups=(MASTERS_GROUP,))
CONTROLPLANE = Identity(user=CONTROLPLANE_USER, groups=(CONTROLPLANE_GROUP,))

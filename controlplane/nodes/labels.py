"""Which labels a node may set on its own Node (Kubernetes' NodeRestriction, for Pilothouse).

An agent reports labels when it registers. It may set:
- `kubernetes.io/hostname`, and only to its own node name (pods are placed by it);
- `kubernetes.io/os`, `kubernetes.io/arch`, `node.kubernetes.io/instance-type`,
  `topology.kubernetes.io/region`, `topology.kubernetes.io/zone` and their beta names
  (`beta.kubernetes.io/…`, `failure-domain.beta.kubernetes.io/…`);
- anything under `kubelet.kubernetes.io/` or `node.kubernetes.io/` (and their subdomains);
- any label outside the `kubernetes.io`, `k8s.io` and `pilothouse.io` domains (`disk=ssd`,
  `example.com/rack=3`).
It may not set the others in those domains; in particular labels under
`node-role.kubernetes.io/`, `node-restriction.kubernetes.io/` and
`node-restriction.pilothouse.io/` are an admin's alone (`pilothouse apply` of the Node), so a
pod that selects them cannot be attracted by a node that labels itself.

Invariant: `forbidden` is a pure function; the registry refuses the whole registration when it
reports anything (PERMISSION_DENIED, every reason listed), and keeps labels set by people.
"""

from __future__ import annotations

from collections.abc import Mapping

HOSTNAME = "kubernetes.io/hostname"
ALLOWED_KEYS = frozenset(
    {
        HOSTNAME,
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    }
)
ALLOWED_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
ADMIN_ONLY_DOMAINS = (
    "node-role.kubernetes.io",
    "node-restriction.kubernetes.io",
    "node-restriction.pilothouse.io",
)
RESTRICTED_DOMAINS = ("kubernetes.io", "k8s.io", "pilothouse.io")


def _within(domain: str, parents: tuple[str, ...]) -> bool:
    return any(domain == parent or domain.endswith("." + parent) for parent in parents)


def forbidden(node_name: str, labels: Mapping[str, str]) -> list[str]:
    """Why a node named `node_name` may not set each of `labels` (empty: it may set them all)."""
    reasons = []
    for key, value in sorted(labels.items()):
        if key == HOSTNAME:
            if value != node_name:
                reasons.append(
                    f"label {key}={value!r}: a node may set its hostname label only to its own "
                    f'name "{node_name}"'
                )
            continue
        if key in ALLOWED_KEYS:
            continue
        domain = key.split("/", 1)[0] if "/" in key else ""
        if _within(domain, ADMIN_ONLY_DOMAINS):
            reasons.append(f"label {key}: labels under {domain}/ are set by an admin only")
        elif _within(domain, ALLOWED_DOMAINS):
            continue
        elif _within(domain, RESTRICTED_DOMAINS):
            reasons.append(
                f"label {key}: a node may set only the documented labels under {domain}/ "
                "(hostname, os, arch, instance-type, region, zone, kubelet.kubernetes.io/, "
                "node.kubernetes.io/)"
            )
    return reasons

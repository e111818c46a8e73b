"""Flags of node registration, node sync and node lifecycle, and their defaults.

- `--node-grace-period 3`: seconds without a heartbeat before a node is marked NotReady;
  also how long a silent agent keeps its node name from another agent.
- `--pod-eviction-timeout 2`: seconds a node stays NotReady before its pods are deleted (and
  replaced elsewhere).
- `--node-heartbeat-interval 1`: how often agents heartbeat (sent to them at registration).
- `--node-resync-interval 10`: how often each node's whole pod set is pushed even when
  nothing changed.
- `--cluster-cidr 10.244.0.0/16`: the range nodes' pod CIDRs (a /24 each) are allocated from
  at registration (see `controlplane.nodes.podcidr`).
- `--local-path-dir /var/lib/pilothouse/storage`: the directory on every node under which the
  built-in local-path provisioner makes volumes (the `nodePath` of the `local-path`
  StorageClass the control plane makes when it is missing); `pilothouse up` puts it in its
  data dir, so `down` removes it.

`split(argv)` takes these flags out of a control-plane command line and leaves the rest for
`controlplane.config`, so both sets parse together (`add_flags` shows them in `--help`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.nodes import podcidr

DEFAULT_LOCAL_PATH_DIR = "/var/lib/pilothouse/storage"


class SettingsError(ValueError):
    """A node flag with an unusable value."""


# After a control plane starts, agents come back within their reconnect backoff (at most 5 s,
# `nodeagent.registration.RECONNECT_BACKOFF_MS`) and a TLS handshake each: the node-lifecycle
# controller gives every node this long on top of its grace period before judging it.
RECONNECT_ALLOWANCE = 6.0


@dataclass(frozen=True, slots=True)
class NodeSettings:
    grace_period: float = 3.0
    eviction_timeout: float = 2.0
    heartbeat_interval: float = 1.0
    resync_interval: float = 10.0
    cluster_cidr: str = podcidr.DEFAULT_CLUSTER_CIDR
    local_path_dir: str = DEFAULT_LOCAL_PATH_DIR

    def pod_cidrs(self) -> podcidr.Allocator:
        """The allocator of nodes' pod CIDRs (validated by `split`)."""
        return podcidr.Allocator.of(self.cluster_cidr)


# The node flags: (flag, NodeSettings field, value type, metavar, help).
_FLAGS: tuple[tuple[str, str, type, str, str], ...] = (
    (
        "--node-grace-period",
        "grace_period",
        float,
        "SECONDS",
        "no heartbeat for this long: the node is NotReady (default %(default)s)",
    ),
    (
        "--pod-eviction-timeout",
        "eviction_timeout",
        float,
        "SECONDS",
        "NotReady for this long: its pods are deleted and replaced (default %(default)s)",
    ),
    (
        "--node-heartbeat-interval",
        "heartbeat_interval",
        float,
        "SECONDS",
        "how often agents heartbeat (default %(default)s)",
    ),
    (
        "--node-resync-interval",
        "resync_interval",
        float,
        "SECONDS",
        "push each node's pod set at least this often (default %(default)s)",
    ),
    (
        "--cluster-cidr",
        "cluster_cidr",
        str,
        "CIDR",
        "pod addresses: each node gets a /24 of it (default %(default)s)",
    ),
    (
        "--local-path-dir",
        "local_path_dir",
        str,
        "DIR",
        "where the built-in local-path provisioner puts volumes on every node: the nodePath "
        "of the local-path StorageClass, when the control plane makes it (default "
        "%(default)s)",
    ),
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    defaults = NodeSettings()
    group = parser.add_argument_group("nodes")
    for flag, field, kind, metavar, help in _FLAGS:
        group.add_argument(
            flag,
            dest=field,
            type=kind,
            default=getattr(defaults, field),
            metavar=metavar,
            help=help,
        )


def split(argv: Sequence[str]) -> tuple[NodeSettings, list[str]]:
    """The node settings in `argv`, and the arguments that are not node flags."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    args, rest = parser.parse_known_args(list(argv))
    settings = NodeSettings(**{field: getattr(args, field) for _, field, *_ in _FLAGS})
    try:
        settings.pod_cidrs()
    except podcidr.InvalidCidr as error:
        raise SettingsError(f"--cluster-cidr: {error}") from None
    for flag, value in (
        ("--node-grace-period", settings.grace_period),
        ("--node-heartbeat-interval", settings.heartbeat_interval),
        ("--node-resync-interval", settings.resync_interval),
    ):
        if value <= 0:
            raise SettingsError(f"{flag} must be greater than 0, got {value:g}")
    path = settings.local_path_dir
    if not path.startswith("/") or path.rstrip("/") == "" or ".." in path.split("/"):
        raise SettingsError(
            f"--local-path-dir must be an absolute directory other than /, got {path!r}"
        )
    if settings.eviction_timeout < 0:
        raise SettingsError(
            f"--pod-eviction-timeout must not be negative, got {settings.eviction_timeout:g}"
        )
    if settings.heartbeat_interval >= settings.grace_period:
        raise SettingsError(
            f"--node-heartbeat-interval ({settings.heartbeat_interval:g} s) must be shorter "
            f"than --node-grace-period ({settings.grace_period:g} s)"
        )
    return settings, rest

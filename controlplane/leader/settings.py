"""Flags of a highly available control plane: the member's name, its leader lease, and its
place in a cluster of embedded etcds.

- `--name NAME`: this control-plane member's name in `get controlplanes` and in the leader
  history (default: `--etcd-name`, else the machine's host name).
- `--leader-lease-ttl 2`: seconds a leader's lease lives without renewal; renewed every
  third of it. 2 s is etcd's minimum lease with its default election timeout (a shorter one
  is raised to it), so a killed leader is replaced about 2 s later. Measured here (2 cores,
  bench/failover.py, 5 rounds): kill -9 of the leader -> the new leader's first reconcile in
  1.7-2.4 s, a clean stop -> 0.13-0.32 s; with three members idle for 90 s at a load average
  of 7-13, not one renewal was late. Raise it on a slower or more loaded machine: a leader
  that cannot renew in time steps down, and leadership then moves more often than it should.
- `--etcd-name NAME --etcd-initial-cluster NAME=HOST:PEER_PORT,…`: the embedded etcd runs
  as one member of a cluster (each control plane of a three-member control plane starts one,
  with the same list); `--etcd-client-port` (default 2379 in a cluster) is where this member
  serves clients on HOST. Every member must share the etcd CA: start the first one, then
  copy its `pki/` directory (the cluster CA and `pki/etcd/`) into the others' data dirs
  before their first start (`pilothouse up --control-planes 3` does so).
- `--init-pki`: make that PKI under `--data-dir` (cluster CA and certificates, the etcd CA,
  the Secrets encryption keys, which every member must share too) and exit, so it can be
  copied before any member starts (a member of a new etcd cluster cannot finish starting
  alone: etcd waits for a majority).

`split(argv)` takes these flags out of a command line, as `controlplane.nodes.settings` does.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.leader.election import DEFAULT_TTL
from controlplane.store.embedded import Cluster

DEFAULT_CLUSTER_CLIENT_PORT = 2379


class SettingsError(ValueError):
    """An HA flag with an unusable value."""


@dataclass(frozen=True, slots=True)
class HaSettings:
    name: str = ""
    lease_ttl: int = DEFAULT_TTL
    etcd_name: str = ""
    etcd_initial_cluster: str = ""
    etcd_client_port: int | None = None
    init_pki: bool = False

    @property
    def member(self) -> str:
        """This member's name (see `--name`)."""
        return self.name or self.etcd_name or socket.gethostname()

    def cluster(self) -> Cluster | None:
        """The embedded etcd's cluster (None: a single member of its own)."""
        if not self.etcd_initial_cluster:
            return None
        return Cluster.parse(self.etcd_name, self.etcd_initial_cluster)

    @property
    def client_port(self) -> int | None:
        if self.etcd_client_port is not None:
            return self.etcd_client_port
        return DEFAULT_CLUSTER_CLIENT_PORT if self.etcd_initial_cluster else None


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("high availability")
    group.add_argument(
        "--name", default="", help="this member's name (default: --etcd-name, else the host name)"
    )
    group.add_argument(
        "--leader-lease-ttl",
        type=int,
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help="the leader's lease; a dead leader is replaced after about this long "
        "(default %(default)s, etcd's minimum)",
    )
    group.add_argument(
        "--etcd-name", default="", help="this member's name in --etcd-initial-cluster"
    )
    group.add_argument(
        "--etcd-initial-cluster",
        default="",
        metavar="NAME=HOST:PORT,...",
        help="run the embedded etcd as a member of this cluster (peer addresses of every member)",
    )
    group.add_argument(
        "--etcd-client-port",
        type=int,
        default=None,
        metavar="PORT",
        help=f"the embedded etcd's client port (default: {DEFAULT_CLUSTER_CLIENT_PORT} in a "
        "cluster, else a free port chosen once)",
    )
    group.add_argument(
        "--init-pki",
        action="store_true",
        help="make the PKI under --data-dir (to copy to the other members) and exit",
    )


def split(argv: Sequence[str]) -> tuple[HaSettings, list[str]]:
    """The HA settings in `argv`, and the arguments that are not HA flags."""
    # No abbreviations: "--etcd" (an etcd of one's own) must not pass for "--etcd-name".
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_flags(parser)
    args, rest = parser.parse_known_args(list(argv))
    settings = HaSettings(
        name=args.name.strip(),
        lease_ttl=args.leader_lease_ttl,
        etcd_name=args.etcd_name.strip(),
        etcd_initial_cluster=args.etcd_initial_cluster.strip(),
        etcd_client_port=args.etcd_client_port,
        init_pki=args.init_pki,
    )
    if settings.lease_ttl < 1:
        raise SettingsError(f"--leader-lease-ttl must be at least 1 s, got {settings.lease_ttl}")
    if settings.etcd_initial_cluster and not settings.etcd_name:
        raise SettingsError("--etcd-initial-cluster needs --etcd-name (this member's entry)")
    if settings.etcd_name and not settings.etcd_initial_cluster:
        raise SettingsError("--etcd-name needs --etcd-initial-cluster")
    try:
        settings.cluster()
    except ValueError as error:
        raise SettingsError(str(error)) from None
    port = settings.etcd_client_port
    if port is not None and not 0 < port < 65536:
        raise SettingsError(f"--etcd-client-port must be a TCP port, got {port}")
    return settings, rest

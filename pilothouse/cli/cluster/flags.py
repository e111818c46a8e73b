"""The flags of `up` and `down`, defined once for `pilothouse up|down` and for
`python3 -m pilothouse.cli.cluster up|down` (which a detached `up` re-executes).

Invariant: only argparse here, no cluster code, so the CLI can build its parsers without
importing the cluster machinery.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT_DATA_DIR = "/var/lib/pilothouse/local"
NETWORKS = ("netns", "host")  # hosts.Placement's values, the default first


def add_up(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1, help="number of agents (default 1)")
    parser.add_argument(
        "--hollow-nodes",
        type=int,
        default=0,
        help="also run N simulated nodes in one `pilothouse hollow` process (capacity "
        "planning, scale tests; default 0)",
    )
    parser.add_argument(
        "--control-planes",
        type=int,
        default=1,
        choices=(1, 3, 5),
        help="control-plane members, each with its etcd member (default 1; 3 for a control "
        "plane that survives the loss of one)",
    )
    parser.add_argument(
        "--network",
        choices=NETWORKS,
        default=NETWORKS[0],
        help="where nodes run: netns (default: a network namespace each, on a bridge, pods "
        "with their own IPs routed between nodes) or host (all on this machine's network)",
    )
    parser.add_argument(
        "--pod-eviction-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds a node stays NotReady before its pods are replaced elsewhere (default: "
        "the control plane's, 2 s); longer, an agent restarted on a busy machine moves no pod",
    )
    parser.add_argument(
        "-d", "--detach", action="store_true", help="run in the background; stop with `down`"
    )
    _data_dir(parser)
    parser.add_argument(
        "--client-config",
        type=Path,
        default=None,
        help="CLI config file to point at the cluster (default $PILOTHOUSE_CONFIG or "
        "~/.pilothouse/config.yaml)",
    )


def add_down(parser: argparse.ArgumentParser) -> None:
    _data_dir(parser)


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where the cluster keeps its state (default {ROOT_DATA_DIR} as root, else "
        "~/.local/share/pilothouse/local)",
    )

"""The flags of `node add`, `node remove` and `controlplane install`: parsers only, so building
the CLI's parsers imports no SSH library."""

from __future__ import annotations

import argparse
from pathlib import Path

READY_TIMEOUT = 900.0


def add_subverbs(verbs: argparse._SubParsersAction) -> None:
    """`node add` and `node remove`, added to the `node` verb's sub-commands."""
    add = verbs.add_parser("add", help="install an agent on hosts over SSH and join them")
    add.add_argument("targets", nargs="+", metavar="USER@HOST[:PORT]")
    add.add_argument(
        "--name", default="", help="the node's name (one host only; default: the host's name)"
    )
    add.add_argument(
        "--ssh-key",
        type=Path,
        default=None,
        metavar="PATH",
        help="private key to log in with (default: your SSH keys and agent)",
    )
    add.add_argument(
        "--known-hosts",
        type=Path,
        default=None,
        metavar="PATH",
        help="known_hosts file (default ~/.ssh/known_hosts)",
    )
    add.add_argument(
        "--accept-new",
        action="store_true",
        help="trust a host not in known_hosts yet and record its key "
        "(a changed key is refused all the same)",
    )
    add.add_argument("--labels", default="", metavar="K=V,...", help="labels for the node")
    add.add_argument(
        "--registries",
        type=Path,
        default=None,
        metavar="FILE",
        help="registries.yaml for the agent (mirrors, credentials)",
    )
    add.add_argument(
        "--wheels",
        type=Path,
        default=None,
        metavar="DIR",
        help="install these wheels (Pilothouse's and its dependencies') instead of building "
        "them from this source tree",
    )
    add.add_argument(
        "--timeout",
        type=float,
        default=READY_TIMEOUT,
        help="seconds to wait for each node to be Ready",
    )
    remove = verbs.add_parser("remove", help="drain a node, stop its agent, delete it")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--ssh-key", type=Path, default=None, metavar="PATH")
    remove.add_argument("--known-hosts", type=Path, default=None, metavar="PATH")
    remove.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the node's pods to go"
    )


def controlplane_install_parser() -> argparse.ArgumentParser:
    """`pilothouse controlplane install USER@HOST` (the `controlplane` verb runs the process;
    `install` is the CLI's, see pilothouse.cli.main)."""
    p = argparse.ArgumentParser(
        prog="pilothouse controlplane install",
        description="Install a control plane on a host over SSH, start it, and bring its "
        "admin credentials here.",
    )
    p.add_argument("target", metavar="USER@HOST[:PORT]")
    p.add_argument("--name", default="", help="the member's name (and its etcd member's)")
    p.add_argument("--ssh-key", type=Path, default=None, metavar="PATH")
    p.add_argument("--known-hosts", type=Path, default=None, metavar="PATH")
    p.add_argument("--accept-new", action="store_true", help="trust a host not in known_hosts")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the admin credentials go (default ~/.pilothouse/HOST/)",
    )
    p.add_argument("--wheels", type=Path, default=None, metavar="DIR", help="wheels to install")
    p.add_argument("--timeout", type=float, default=READY_TIMEOUT, help="seconds to wait")
    return p

"""`python3 -m pilothouse.cluster up|down`: the local cluster without the rest of the CLI.

A detached `up` re-executes itself this way; `pilothouse up` and `pilothouse down` call the
same functions (`pilothouse.cluster.local.up` / `down`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pilothouse import logs
from pilothouse.cluster import local
from pilothouse.cluster.layout import ROOT_DATA_DIR


def add_arguments(up: argparse.ArgumentParser, down: argparse.ArgumentParser) -> None:
    """The flags of `up` and `down`, shared with the `pilothouse` CLI."""
    data_help = f"where the cluster keeps its state (default {ROOT_DATA_DIR} as root)"
    up.add_argument("--nodes", type=int, default=1, help="number of agents (default 1)")
    up.add_argument(
        "-d", "--detach", action="store_true", help="run in the background; stop with `down`"
    )
    up.add_argument("--data-dir", type=Path, default=None, help=data_help)
    up.add_argument(
        "--client-config",
        type=Path,
        default=None,
        help="CLI config file to point at the cluster (default $PILOTHOUSE_CONFIG or "
        "~/.pilothouse/config.yaml)",
    )
    down.add_argument("--data-dir", type=Path, default=None, help=data_help)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m pilothouse.cluster")
    p.add_argument("--debug", action="store_true")
    verbs = p.add_subparsers(dest="verb", required=True)
    add_arguments(
        verbs.add_parser("up", help="start a local cluster"),
        verbs.add_parser("down", help="stop the local cluster and remove what it made"),
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup(debug=args.debug)
    try:
        if args.verb == "up":
            return asyncio.run(
                local.up(
                    nodes=args.nodes,
                    data_dir=args.data_dir,
                    detach=args.detach,
                    client_config=args.client_config,
                )
            )
        return asyncio.run(local.down(data_dir=args.data_dir))
    except local.ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

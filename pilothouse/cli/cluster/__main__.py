"""`python3 -m pilothouse.cli.cluster up|down`: the local cluster without the rest of the CLI.

A detached `up` re-executes itself this way; `pilothouse up` and `pilothouse down` call the
same functions (`pilothouse.cli.cluster.local.up` / `down`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pilothouse import logs
from pilothouse.cli.cluster import flags, hosts, local


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m pilothouse.cli.cluster")
    p.add_argument("--debug", action="store_true")
    # The keeper hands `up`'s log level on to `finish` (`pilothouse up` in a terminal: warnings).
    p.add_argument("--log-level", type=int, default=None, help=argparse.SUPPRESS)
    verbs = p.add_subparsers(dest="verb", required=True)
    flags.add_up(verbs.add_parser("up", help="start a local cluster"))
    flags.add_down(verbs.add_parser("down", help="stop the local cluster, remove what it made"))
    # The keeper's way back (exec'd by pilothouse.cli.cluster.keeper on a stop signal).
    flags.add_down(verbs.add_parser("finish", help="(internal) stop the cluster this process kept"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup(debug=args.debug, level=args.log_level)
    try:
        if args.verb == "up":
            return asyncio.run(
                local.up(
                    nodes=args.nodes,
                    hollow_nodes=args.hollow_nodes,
                    control_planes=args.control_planes,
                    data_dir=args.data_dir,
                    detach=args.detach,
                    client_config=args.client_config,
                    placement=hosts.Placement(args.network),
                    pod_eviction_timeout=args.pod_eviction_timeout,
                )
            )
        if args.verb == "finish":
            return asyncio.run(local.finish(data_dir=args.data_dir))
        return asyncio.run(local.down(data_dir=args.data_dir))
    except local.ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`pilothouse up [--nodes N] [-d]` and `pilothouse down`: the one-command local cluster.

Invariant: the cluster machinery (`pilothouse.cli.cluster.local`, which pulls in the image code)
is imported only when one of these verbs runs, so the rest of the CLI starts fast. The work
itself lives in `pilothouse.cli.cluster`; this module only maps flags and errors.
"""

from __future__ import annotations

import argparse

from pilothouse.cli.cluster import flags
from pilothouse.cli.context import Context


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    flags.add_up(
        subparsers.add_parser(
            "up",
            help="start a local cluster: registry, control plane, N agents",
            description="Start a registry with the busybox test image, a control plane and "
            "N agents on this machine, each agent in a network namespace of its own with pod "
            "networking (or all on this machine's network with --network host), and point the "
            "CLI at it. Ctrl-C stops it and removes what it made; with -d it runs in the "
            "background until `pilothouse down`.",
        )
    )
    flags.add_down(
        subparsers.add_parser(
            "down",
            help="stop the local cluster and remove what it made",
            description="Stop the local cluster (also after a crash) and remove its "
            "containers, mounts, cgroups and state. Exits 0 when none runs.",
        )
    )


async def run_up(args: argparse.Namespace, ctx: Context) -> int:
    from pilothouse.cli.cluster import hosts, local

    try:
        return await local.up(
            nodes=args.nodes,
            hollow_nodes=args.hollow_nodes,
            control_planes=args.control_planes,
            placement=hosts.Placement(args.network),
            data_dir=args.data_dir,
            detach=args.detach,
            client_config=args.client_config or ctx.config.path,
            out=ctx.out,
            pod_eviction_timeout=args.pod_eviction_timeout,
        )
    except local.ClusterError as error:
        ctx.err.write(f"error: {error}\n")
        return 1


async def run_down(args: argparse.Namespace, ctx: Context) -> int:
    from pilothouse.cli.cluster import local

    try:
        return await local.down(data_dir=args.data_dir, out=ctx.out)
    except local.ClusterError as error:
        ctx.err.write(f"error: {error}\n")
        return 1


VERBS = {"up": run_up, "down": run_down}

"""`pilothouse hollow`: N simulated nodes in one asyncio process (kubemark's hollow nodes).

Each node is a real node to the control plane (see `nodeagent.hollow.node`): its own join,
certificate, gRPC endpoint speaking the NodeAgent API, heartbeats. Pods pushed to it go
Running and Ready at once, or after `--start-delay` s, or Failed with `--failure-rate`.
Useful for capacity planning and for trying manifests against a large cluster.

Order: the nodes start together; joins run a few at a time (the join port limits calls per
peer). `<state-dir>/hollow.ready` is written once every node has registered (and removed on
the way out), for tools that start this process and wait for it. A node that fails ends the
process (non-zero), as a failed part ends an agent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import structlog

from nodeagent.api import nodeinfo
from nodeagent.hollow.node import HollowNode, HollowSettings
from pilothouse import logs, quantity
from pilothouse.process import signals
from pilothouse.process.runnable import RunnableExited, Task, run_all

log = structlog.get_logger(__name__)

READY_FILE = "hollow.ready"
JOINS_IN_FLIGHT = 4  # the join port admits 4 calls in flight per peer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilothouse hollow",
        description="run N simulated nodes (hollow agents) in one process",
    )
    p.add_argument("--server", required=True, help="control plane API address(es), HOST:PORT")
    p.add_argument("--join-server", default="", help="the join port (default: --server)")
    p.add_argument("--token-file", type=Path, help="file holding a join token usable N times")
    p.add_argument("--ca-cert-hash", default="", help="sha256:<hex> of the cluster CA")
    p.add_argument("--insecure", action="store_true", help="plaintext, no join (dev only)")
    p.add_argument("--nodes", type=int, required=True, help="how many nodes")
    p.add_argument("--name-prefix", default="hollow-", help="node names: PREFIX0001, ...")
    p.add_argument("--first", type=int, default=1, help="number of the first node")
    p.add_argument("--start-delay", type=float, default=0.0, help="s before a pod is Running")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of pods that fail")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/pilothouse/hollow"))
    p.add_argument("--node-ip", default="127.0.0.1", help="where the nodes listen")
    p.add_argument("--cpu", default="4", help="each node's CPU capacity (quantity)")
    p.add_argument("--memory", default="16Gi", help="each node's memory capacity (quantity)")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--debug", action="store_true")
    return p


def names(prefix: str, count: int, *, first: int = 1) -> list[str]:
    width = max(4, len(str(first + count - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(first, first + count)]


async def serve(args: argparse.Namespace) -> int:
    args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Every shared setting has the flag of the same name.
    settings = HollowSettings(**{f.name: getattr(args, f.name) for f in fields(HollowSettings)})
    facts = nodeinfo.gather(
        runtime_version="hollow://0.1",
        max_pods=args.max_pods,
        cpu_millis=quantity.parse_cpu(args.cpu),
        memory_bytes_override=quantity.parse_memory(args.memory),
    )
    slots = asyncio.Semaphore(JOINS_IN_FLIGHT)
    nodes = [
        HollowNode(name, settings=settings, facts=facts, join_slots=slots, seed=i)
        for i, name in enumerate(names(args.name_prefix, args.nodes, first=args.first))
    ]
    ready = args.state_dir / READY_FILE

    async def announce() -> None:
        await asyncio.gather(*(n.registered.wait() for n in nodes))
        ready.write_text(f"{len(nodes)}\n")
        log.info("hollow.ready", nodes=len(nodes))
        print(f"pilothouse hollow: {len(nodes)} nodes registered", flush=True)
        await asyncio.Event().wait()

    try:
        await run_all([*nodes, Task("announce", announce)])
    except RunnableExited as error:
        log.error("hollow.failed", error=str(error))
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `pilothouse hollow` and `python3 -m nodeagent.hollow`."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    if not args.insecure and (args.token_file is None or not args.ca_cert_hash):
        print("error: --token-file and --ca-cert-hash are needed (or --insecure)", file=sys.stderr)
        return 2
    logs.setup(debug=args.debug)
    try:
        return asyncio.run(signals.run_until_signalled(serve(args)))
    except KeyboardInterrupt:
        return 130

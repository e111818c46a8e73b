"""Services benchmarks: (a) programming latency, (b) data-path throughput, (c) DNS lookups on a
live `up --nodes 3` cluster (bench/services_live.py), and (d) the cost of programming a node's
Services table.

(d) In a scratch network namespace, program N Services x E ready endpoints (every other one a
NodePort) with `DataPlane.program` — render + one `nft -f` transaction replacing the whole
table — for growing N (default 100, 250, 500, 1000 with E = 10), and report per size: the
first program into an empty namespace, a re-program of the same size over the full table
(what every later change costs, since the table is always rebuilt whole), the time spent
rendering alone, and the size of the table: chains, rules, map/set elements, the rules the
kernel lists, and the bytes of nft text.

(a)-(c): see bench/services_live.py (one `up --nodes 3` in a temp dir, removed at the end).

Everything is removed at the end (cluster, table, namespace), also on failure. The last line
is JSON with every part run.

Usage: python3 bench/services.py [--parts a,b,c,d] [--flips 20] [--seconds 5] [--concurrency 8]
       [--rounds 3] [--lookups 2000] [--sizes 100,250,500,1000] [--endpoints 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodeagent.services.model import Endpoint, NodeFacts, ProxyState, Service, ServicePort
from nodeagent.services.proxy import DataPlane
from nodeagent.services.render import render


def make_state(services: int, endpoints: int) -> ProxyState:
    """`services` Services of one TCP port each, `endpoints` distinct pod IPs per Service."""
    svcs = []
    for i in range(services):
        eps = []
        for j in range(endpoints):
            n = i * endpoints + j
            eps.append(Endpoint(f"10.244.{n // 250}.{n % 250 + 2}", 8080))
        port = ServicePort(
            80, name="http", node_port=30000 + i if i % 2 == 0 else 0, endpoints=tuple(eps)
        )
        svcs.append(Service("bench", f"svc-{i}", f"10.96.{i // 250}.{i % 250 + 1}", (port,)))
    node = NodeFacts(
        node_ips=("172.30.0.11",),
        pod_cidrs=("10.244.0.0/24",),
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/16",
    )
    return ProxyState(node=node, services=tuple(svcs))


def kernel_rules(netns: str) -> int:
    """Rules of our table as the kernel lists them (one `# handle` line per rule)."""
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "--", "nft", "-a", "list", "table", "ip", "pilothouse"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    heads = ("chain", "table", "set", "map")
    return sum(
        1 for line in out.splitlines() if "# handle" in line and not line.lstrip().startswith(heads)
    )


async def measure(netns: str, services: int, endpoints: int, repeats: int) -> dict[str, object]:
    state = make_state(services, endpoints)
    renders = []
    for _ in range(repeats):
        started = time.perf_counter()
        table = render(state)
        renders.append(time.perf_counter() - started)
    plane = DataPlane(netns=netns)
    firsts, again = [], []
    try:
        for _ in range(repeats):
            await plane.remove()
            firsts.append((await plane.program(state)).seconds)
            again.append((await plane.program(state)).seconds)
        listed = kernel_rules(netns)
    finally:
        await plane.remove()
    return {
        "services": services,
        "endpoints_per_service": endpoints,
        "first_program_ms": round(statistics.median(firsts) * 1000, 1),
        "reprogram_ms": round(statistics.median(again) * 1000, 1),
        "reprogram_max_ms": round(max(again) * 1000, 1),
        "render_ms": round(statistics.median(renders) * 1000, 1),
        "chains": len(table.chains),
        "rules": table.rule_count,
        "kernel_rules": listed,
        "elements": table.element_count,
        "nft_bytes": len(table.replace_text()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,1000")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--flips", type=int, default=20, help="(a) readiness flips")
    parser.add_argument("--seconds", type=float, default=5.0, help="(b) seconds per round")
    parser.add_argument("--concurrency", type=int, default=8, help="(b) requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="(b) rounds of each path")
    parser.add_argument("--lookups", type=int, default=2000, help="(c) DNS lookups")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench makes network namespaces and a cluster")
    parts = set(args.parts.split(","))
    results: dict[str, object] = {"bench": "services", "nft": _nft_version()}
    if parts & {"a", "b", "c"}:
        from bench.services_live import run as live

        with tempfile.TemporaryDirectory(prefix="ph-bench-svc-") as root:
            results.update(
                live(
                    ",".join(sorted(parts)),
                    root=Path(root),
                    flips=args.flips,
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                    rounds=args.rounds,
                    count=args.lookups,
                )
            )
        for part in ("a", "b", "c"):
            if part in results:
                print(f"({part}) {json.dumps(results[part])}", file=sys.stderr)
    if "d" not in parts:
        print(json.dumps(results))
        return
    name = f"phbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        netns = f"/run/netns/{name}"
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            row = asyncio.run(measure(netns, size, args.endpoints, args.repeats))
            print(
                f"{size:>5} services x {args.endpoints} endpoints: first {row['first_program_ms']} "
                f"ms, again {row['reprogram_ms']} ms (render {row['render_ms']} ms), "
                f"{row['rules']} rules, {row['elements']} elements, {row['chains']} chains",
                file=sys.stderr,
            )
            rows.append(row)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
    results["d"] = {"sizes": rows}
    print(json.dumps(results))


def _nft_version() -> str:
    return subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()

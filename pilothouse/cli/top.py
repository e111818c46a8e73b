"""`pilothouse top pods [-A] [--containers] [-l SELECTOR]` and `pilothouse top nodes`: the
resource use the agents measured last, as kubectl top shows it.

Columns as kubectl's: pods `NAME CPU(cores) MEMORY(bytes)` (with NAMESPACE first under -A,
POD and NAME under --containers); nodes `NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)`,
the percentages of the node's allocatable. CPU in millicores ("250m"), memory in Mi.

Invariants: nodes whose agents did not answer are named on stderr and the rest are shown;
with nothing measured at all, the error is kubectl's `metrics not available yet`.
"""

from __future__ import annotations

import argparse

from pilothouse import quantity
from pilothouse.cli import tables
from pilothouse.cli.context import Context
from pilothouse.cli.usage import UsageError
from pilothouse.kinds import Kind
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top",
        help="show the CPU and memory use of pods or nodes",
        description="Show resource use: `top pods [-A] [--containers] [-l SELECTOR]`, `top nodes`.",
    )
    parser.add_argument("what", choices=("pods", "pod", "po", "nodes", "node", "no"))
    parser.add_argument("name", nargs="?", default="", help="one pod or node")
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("-A", "--all-namespaces", action="store_true")
    parser.add_argument("--containers", action="store_true", help="a line per container")
    parser.add_argument("-l", "--selector", default="", help="label selector (pods)")


def cpu(nanocores: int) -> str:
    return f"{round(nanocores / 1e6)}m"


def memory(count: int) -> str:
    return f"{count // (1024 * 1024)}Mi"


async def run(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        stub = client.service(api_grpc.ResourceUsageStub)
        if args.what in ("nodes", "node", "no"):
            with client.errors(Kind.NODE, args.name):
                answer = await stub.TopNodes(api.TopNodesRequest(), timeout=client.timeout)
                nodes = {n.metadata.name: n for n in (await client.list(Kind.NODE)).items}
            for error in answer.errors:
                ctx.warn(error)
            samples = [s for s in answer.nodes if not args.name or s.name == args.name]
            if not samples:
                raise UsageError("metrics not available yet")
            rows = []
            for s in sorted(samples, key=lambda s: s.name):
                alloc = nodes[s.name].status.allocatable if s.name in nodes else {}
                cpu_total = quantity.parse_cpu(alloc.get("cpu", "0")) * 1_000_000
                mem_total = quantity.parse_memory(alloc.get("memory", "0"))
                rows.append(
                    (
                        s.name,
                        cpu(s.cpu_nanocores),
                        _percent(s.cpu_nanocores, cpu_total),
                        memory(s.memory_working_set_bytes),
                        _percent(s.memory_working_set_bytes, mem_total),
                    )
                )
            headers = ("NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)")
            ctx.print(tables.render(tables.Table(headers=headers, rows=tuple(rows))))
            return 0
        namespace = "" if args.all_namespaces else ctx.namespace(args.namespace)
        request = api.TopPodsRequest(namespace=namespace, label_selector=args.selector)
        with client.errors(Kind.POD, args.name):
            answer = await stub.TopPods(request, timeout=client.timeout)
    for error in answer.errors:
        ctx.warn(error)
    pods = [p for p in answer.pods if not args.name or p.name == args.name]
    if not pods:
        raise UsageError("metrics not available yet")
    pods.sort(key=lambda p: (p.namespace, p.name))
    rows = []
    for p in pods:
        lead = (p.namespace,) if args.all_namespaces else ()
        if args.containers:
            for c in p.containers:
                rows.append(
                    (
                        *lead,
                        p.name,
                        c.name,
                        cpu(c.cpu_nanocores),
                        memory(c.memory_working_set_bytes),
                    )
                )
        else:
            total_cpu = sum(c.cpu_nanocores for c in p.containers)
            total_mem = sum(c.memory_working_set_bytes for c in p.containers)
            rows.append((*lead, p.name, cpu(total_cpu), memory(total_mem)))
    names = ("POD", "NAME") if args.containers else ("NAME",)
    headers = (
        *(("NAMESPACE",) if args.all_namespaces else ()),
        *names,
        "CPU(cores)",
        "MEMORY(bytes)",
    )
    ctx.print(tables.render(tables.Table(headers=headers, rows=tuple(rows))))
    return 0


def _percent(used: int, total: int) -> str:
    return f"{round(used * 100 / total)}%" if total > 0 else "<unknown>"

"""Scheduler throughput (issue 17): binds/s of the scheduler alone, in one process, over a
store of N Ready nodes and P pending pods of one ReplicaSet.

The scheduler runs as the control plane runs it (pod and node informers, an event recorder),
over the in-memory store (`--store memory`: the scheduler's own CPU) or a real etcd with mutual
TLS behind the control plane's watch cache (`--store etcd`: with the write path). Nodes and
pods are written before the scheduler starts; the time runs from its start until its pod
informer has seen every pod bound. No node reports here, so the scheduler writes each pod's
PodScheduled=True itself `--condition-delay` seconds after binding (as for a node slow to
report; in a cluster the node's first status report brings it and the scheduler writes
nothing): 1 s as in the control plane. Also reported: the spread (most pods on one node vs
the mean) and whether any node's requests exceed its allocatable. `--profile FILE` writes a
cProfile of the scheduling run.

Prints a line per size and JSON last.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.scheduler.runner import Scheduler
from controlplane.store import Store
from controlplane.store.memory import MemoryStore
from controlplane.store.watchcache import WatchCache
from pilothouse.kinds import Kind
from tests import factories


async def _write_all(objects: ObjectStore, messages: list, *, concurrency: int = 64) -> None:  # type: ignore[type-arg]
    queue = list(reversed(messages))

    async def writer() -> None:
        while queue:
            await objects.create(queue.pop())

    await asyncio.gather(*(writer() for _ in range(concurrency)))


async def one_size(  # type: ignore[type-arg]
    objects: ObjectStore, nodes: int, pods: int, profile: str | None, condition_delay: float
) -> dict:
    await _write_all(
        objects, [factories.node(name=f"n{i:05}", cpu="4", memory="8Gi") for i in range(nodes)]
    )
    small = factories.container(image="pause", cpu="10m", memory="16Mi")
    await _write_all(
        objects,
        [
            factories.pod(name=f"p{i:06}", owner="rs-uid", owner_name="web", containers=[small])
            for i in range(pods)
        ],
    )
    pod_informer, node_informer = Informer(objects, Kind.POD), Informer(objects, Kind.NODE)
    tasks = [asyncio.create_task(i.run()) for i in (pod_informer, node_informer)]
    await pod_informer.wait_synced()
    await node_informer.wait_synced()
    bound = 0
    done = asyncio.Event()

    def seen(notice) -> None:  # type: ignore[no-untyped-def]
        nonlocal bound
        if notice.object.spec.node_name and (notice.old is None or not notice.old.spec.node_name):
            bound += 1
            if bound == pods:
                done.set()

    pod_informer.add_handler(seen)
    profiler = cProfile.Profile() if profile else None
    cpu0, began = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    scheduler = Scheduler(
        objects,
        pods=pod_informer,
        nodes=node_informer,
        events=EventRecorder(objects, component="default-scheduler"),
        condition_delay=condition_delay,
    )
    tasks.append(asyncio.create_task(scheduler.run()))
    await asyncio.wait_for(done.wait(), timeout=1800)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu0
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    per_node = collections.Counter(p.spec.node_name for p in pod_informer.list())
    overfilled = sum(1 for count in per_node.values() if count * 10 > 4000)
    return {
        "nodes": nodes,
        "pods": pods,
        "seconds": round(elapsed, 3),
        "binds_per_s": round(pods / elapsed, 1),
        "cpu_s": round(cpu, 2),
        "most_on_a_node": max(per_node.values()),
        "mean": round(pods / nodes, 2),
        "overfilled_nodes": overfilled,
    }


@contextlib.asynccontextmanager
async def store_for(kind: str, root: Path) -> AsyncIterator[Store]:
    """The in-memory store, or a real etcd behind the control plane's watch cache."""
    if kind == "memory":
        memory = MemoryStore()
        yield memory
        await memory.close()
        return
    from tests.fixtures.etcd import EtcdServer

    server = EtcdServer(root / "etcd")
    server.start()
    etcd = server.store(root=f"/bench-{os.getpid()}")
    cache = WatchCache(etcd)
    feeding = asyncio.create_task(cache.run())
    try:
        yield cache
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await etcd.close()
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="node counts")
    parser.add_argument("--pods", type=int, default=5000, help="pods per size")
    parser.add_argument("--store", choices=("memory", "etcd"), default="memory")
    parser.add_argument("--profile", help="cProfile output (of the last size)")
    parser.add_argument("--condition-delay", type=float, default=1.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            async with store_for(args.store, Path(tmp) / str(size)) as store:
                result = await one_size(
                    ObjectStore(store), size, args.pods, args.profile, args.condition_delay
                )
            result["store"] = args.store
            result["loadavg"] = round(os.getloadavg()[0], 1)
            results.append(result)
            print(
                f"{size} nodes, {args.pods} pods ({args.store}): {result['binds_per_s']} binds/s, "
                f"{result['cpu_s']} cpu-s in {result['seconds']} s; most {result['most_on_a_node']}"
                f" (mean {result['mean']}), overfilled {result['overfilled_nodes']}, "
                f"load {result['loadavg']}",
                flush=True,
            )
    print(json.dumps({"scheduler": results}))


if __name__ == "__main__":
    asyncio.run(main())

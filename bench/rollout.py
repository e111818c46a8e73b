"""Rollout benchmark: the control loops (informers, deployment controller, garbage collector,
scheduler) in this process over a real etcd (embedded, started in a temp dir; `--memory` for
the in-memory store), with three hollow nodes: Node objects plus a simulated agent that reports
every bound pod Running and Ready at once. No containers run: this measures the control plane.

Measures:
- rollout: a 50-replica Deployment (RollingUpdate 25%/25%, the default) already all Ready, then
  a new image: time until every replica runs the new template, is available and the Deployment
  says NewReplicaSetAvailable;
- scale: a Deployment at 0 replicas scaled to 100: time until 100 pods are bound, Ready and
  counted available in its status.

Prints a readable summary, then one JSON object on the last line.

    python3 bench/rollout.py [--replicas 50] [--scale-to 100] [--memory]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from google.protobuf.struct_pb2 import Value

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.deployment import deployment_controller
from controlplane.controllers.garbage import garbage_collector
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.scheduler.runner import Scheduler
from controlplane.store import StoreError
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import EtcdStore
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

NAMESPACE = "bench"
NODES = ("hollow-1", "hollow-2", "hollow-3")


def deployment(name: str, replicas: int, image: str) -> objects_pb2.Deployment:
    d = objects_pb2.Deployment()
    d.metadata.name = name
    d.metadata.namespace = NAMESPACE
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="web", image=image)
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rolling_update.max_surge.CopyFrom(Value(string_value="25%"))
    d.spec.strategy.rolling_update.max_unavailable.CopyFrom(Value(string_value="25%"))
    d.spec.progress_deadline_seconds = 600
    d.spec.revision_history_limit = 10
    return d


def node(name: str) -> objects_pb2.Node:
    n = objects_pb2.Node()
    n.metadata.name = name
    n.status.allocatable.update({"cpu": "64", "memory": "256Gi", "pods": "500"})
    n.status.capacity.update({"cpu": "64", "memory": "256Gi", "pods": "500"})
    n.status.conditions.add(type="Ready", status="True", reason="AgentReady")
    return n


class HollowNodes:
    """Reports every pod bound to a hollow node Running and Ready (the agents' part)."""

    def __init__(self, objects: ObjectStore, pods: Informer) -> None:
        self._objects = objects
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        pods.add_handler(self._on_pod)

    def _on_pod(self, notice: Notice) -> None:
        pod = notice.object
        if pod.spec.node_name in NODES and pod.status.phase != "Running":
            self._queue.put_nowait((pod.metadata.namespace, pod.metadata.name))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(8):
                group.create_task(self._work())

    async def _work(self) -> None:
        while True:
            namespace, name = await self._queue.get()
            try:
                pod = await self._objects.get(Kind.POD, namespace, name)
                if pod.status.phase == "Running":
                    continue
                pod.status.phase = "Running"
                ready = pod.status.conditions.add(type="Ready", status="True")
                ready.last_transition_time.FromNanoseconds(time.time_ns())
                await self._objects.update_status(pod)
            except StoreError:
                continue  # deleted or changed meanwhile; a later notice brings it back


async def until(check: Callable[[], Awaitable[bool]], *, limit: float = 300.0) -> float:
    start = time.perf_counter()
    while not await check():
        if time.perf_counter() - start > limit:
            raise TimeoutError("the control plane did not get there in time")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start


async def measure(objects: ObjectStore, *, replicas: int, scale_to: int) -> dict[str, float]:
    events = EventRecorder(objects, component="bench")
    informers = {
        kind: Informer(objects, kind)
        for kind in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD, Kind.NODE)
    }
    owned = {k: informers[k] for k in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD)}
    runnables = [
        *informers.values(),
        deployment_controller(
            objects,
            deployments=informers[Kind.DEPLOYMENT],
            replicasets=informers[Kind.REPLICASET],
            pods=informers[Kind.POD],
            events=events,
        ),
        garbage_collector(objects, informers=owned),
        Scheduler(objects, pods=informers[Kind.POD], nodes=informers[Kind.NODE], events=events),
        HollowNodes(objects, informers[Kind.POD]),
    ]
    for name in NODES:
        await objects.create(node(name))
    tasks = [asyncio.create_task(r.run()) for r in runnables]
    try:

        def complete(name: str, count: int, image: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                d = await objects.get(Kind.DEPLOYMENT, NAMESPACE, name)
                s = d.status
                progressing = {c.type: c.reason for c in s.conditions}.get("Progressing")
                if (s.replicas, s.updated_replicas, s.available_replicas) != (count,) * 3:
                    return False
                if progressing != "NewReplicaSetAvailable" or s.observed_generation < (
                    d.metadata.generation
                ):
                    return False
                pods = (await objects.list(Kind.POD, NAMESPACE)).items
                mine = [p for p in pods if p.metadata.labels.get("app") == name]
                return len(mine) == count and all(
                    p.spec.containers[0].image == image and p.status.phase == "Running"
                    for p in mine
                )

            return check

        await objects.create(deployment("roll", replicas, "busybox:1"))
        initial = await until(complete("roll", replicas, "busybox:1"))
        d = await objects.get(Kind.DEPLOYMENT, NAMESPACE, "roll")
        d.spec.template.spec.containers[0].image = "busybox:2"
        await objects.update(d)
        rollout = await until(complete("roll", replicas, "busybox:2"))

        await objects.create(deployment("scale", 0, "busybox:1"))
        await until(complete("scale", 0, "busybox:1"))
        d = await objects.get(Kind.DEPLOYMENT, NAMESPACE, "scale")
        d.spec.replicas = scale_to
        await objects.update(d)
        scale = await until(complete("scale", scale_to, "busybox:1"))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"create_s": initial, "rollout_s": rollout, "scale_s": scale}


async def main(args: argparse.Namespace) -> dict[str, object]:
    if args.memory:
        figures = await measure(
            ObjectStore(MemoryStore()), replicas=args.replicas, scale_to=args.scale_to
        )
        return {"store": "memory", **figures}
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        etcd = EmbeddedEtcd(data_dir=Path(tmp) / "etcd")
        endpoint = await etcd.start()
        store = EtcdStore([endpoint])
        try:
            figures = await measure(
                ObjectStore(store), replicas=args.replicas, scale_to=args.scale_to
            )
        finally:
            await store.close()
            await etcd.stop()
    return {"store": "etcd", **figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--scale-to", type=int, default=100)
    parser.add_argument("--memory", action="store_true", help="in-memory store, not etcd")
    options = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(main(options))
    result.update(replicas=options.replicas, scale_to=options.scale_to, nodes=len(NODES))
    print(
        f"store={result['store']}: create {options.replicas}: {result['create_s']:.2f} s; "
        f"roll {options.replicas} (25%/25%): {result['rollout_s']:.2f} s; "
        f"scale 0 -> {options.scale_to}: {result['scale_s']:.2f} s",
        file=sys.stderr,
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))

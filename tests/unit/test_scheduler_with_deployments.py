"""Deployment controller, garbage collector and scheduler together over the in-memory store:
a user's Deployment becomes pods spread over the nodes, and deleting it removes them all."""

from __future__ import annotations

import asyncio
from collections import Counter

from controlplane.cache.informer import Informer
from controlplane.controllers.deployment import deployment_controller
from controlplane.controllers.garbage import garbage_collector
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import settle
from controlplane.scheduler.runner import Scheduler
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.test_deployment_controller import eventually, make_deployment


class ControlPlane:
    """Everything of the control plane's control loops, wired as main.py wires them."""

    def __init__(self) -> None:
        self.objects = ObjectStore(MemoryStore())
        events = EventRecorder(self.objects, component="pilothouse")
        self.informers = {
            kind: Informer(self.objects, kind)
            for kind in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD, Kind.NODE)
        }
        owned = {k: self.informers[k] for k in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD)}
        self.runnables = [
            *self.informers.values(),
            deployment_controller(
                self.objects,
                deployments=self.informers[Kind.DEPLOYMENT],
                replicasets=self.informers[Kind.REPLICASET],
                pods=self.informers[Kind.POD],
                events=events,
            ),
            garbage_collector(self.objects, informers=owned),
            Scheduler(
                self.objects,
                pods=self.informers[Kind.POD],
                nodes=self.informers[Kind.NODE],
                events=events,
            ),
        ]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ControlPlane:
        self.tasks = [asyncio.create_task(r.run(), name=r.name) for r in self.runnables]
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def placements(self) -> dict[str, str]:
        pods = (await self.objects.list(Kind.POD, "default")).items
        return {p.metadata.name: p.spec.node_name for p in pods}


async def test_six_replica_deployment_runs_two_per_node_and_delete_removes_all() -> None:
    async with ControlPlane() as plane:
        for name in ("n1", "n2", "n3"):
            await plane.objects.create(factories.node(name=name, reason="AgentReady"))
        await plane.objects.create(make_deployment(replicas=6))

        async def spread() -> object:
            where = await plane.placements()
            counts = Counter(where.values())
            return (len(where) == 6 and counts == {"n1": 2, "n2": 2, "n3": 2}) or counts

        await eventually(spread, "6 replicas were not bound 2 per node")
        await plane.objects.delete(Kind.DEPLOYMENT, "default", "web")

        async def gone() -> object:
            return not await plane.placements() or await plane.placements()

        await eventually(gone, "pods outlived their Deployment")


async def test_fifty_replicas_are_created_and_bound_evenly() -> None:
    async with ControlPlane() as plane:
        for name in ("n1", "n2", "n3"):
            await plane.objects.create(factories.node(name=name, reason="AgentReady"))
        await plane.objects.create(make_deployment(replicas=50))

        async def all_bound() -> object:
            where = await plane.placements()
            return (len(where) == 50 and all(where.values())) or len(where)

        await eventually(all_bound, "50 replicas were not all created and bound", within=30)
        counts = Counter((await plane.placements()).values())
        assert max(counts.values()) - min(counts.values()) <= 1, f"uneven spread: {counts}"

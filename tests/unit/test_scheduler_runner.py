"""The scheduler runnable over the in-memory store: pods get bound to Ready nodes, spread,
never overfill a node in a burst, and stay Pending with Kubernetes' reasons until a node fits."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from controlplane.cache.informer import Informer
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import settle
from controlplane.scheduler.runner import Scheduler
from controlplane.store import Conflict
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually, idle

# A pod as the ReplicaSet controller writes it: owned by ReplicaSet web-x, Pending.
REPLICA: dict[str, Any] = {"owner": "rs-uid", "owner_name": "web-x", "phase": "Pending"}


class Plane:
    def __init__(self) -> None:
        self.objects = ObjectStore(MemoryStore())
        self.pods = Informer(self.objects, Kind.POD)
        self.nodes = Informer(self.objects, Kind.NODE)
        self.scheduler = Scheduler(
            self.objects,
            pods=self.pods,
            nodes=self.nodes,
            events=EventRecorder(self.objects, component="default-scheduler"),
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Plane:
        for runnable in (self.pods, self.nodes, self.scheduler):
            self.tasks.append(asyncio.create_task(runnable.run(), name=runnable.name))
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def pod(self, name: str) -> objects_pb2.Pod:
        return await self.objects.get(Kind.POD, "default", name)

    async def placements(self) -> dict[str, str]:
        return {
            p.metadata.name: p.spec.node_name
            for p in (await self.objects.list(Kind.POD, "default")).items
        }


def condition(pod: objects_pb2.Pod, type_: str) -> objects_pb2.Condition | None:
    return next((c for c in pod.status.conditions if c.type == type_), None)


async def test_binds_six_replicas_two_per_node_with_scheduled_condition() -> None:
    async with Plane() as plane:
        for name in ("n1", "n2", "n3"):
            await plane.objects.create(factories.node(name=name, reason="AgentReady"))
        for i in range(6):
            await plane.objects.create(factories.pod(name=f"web-{i}", **REPLICA))

        async def all_bound() -> object:
            where = await plane.placements()
            return all(where.values()) or where

        await eventually(all_bound, "not every pod was bound")
        counts = Counter((await plane.placements()).values())
        assert counts == {"n1": 2, "n2": 2, "n3": 2}, f"6 replicas landed as {counts}"
        pod = await plane.pod("web-0")
        await eventually(
            lambda: _scheduled_true(plane, "web-0"), "bound pod lacks PodScheduled=True"
        )
        assert pod.status.phase == "Pending", "binding must not pretend the pod runs"


async def _scheduled_true(plane: Plane, name: str) -> object:
    found = condition(await plane.pod(name), "PodScheduled")
    return (found is not None and found.status == "True") or found


async def test_burst_never_overfills_a_node() -> None:
    async with Plane() as plane:
        await plane.objects.create(factories.node(name="small", pods="3", reason="AgentReady"))
        await settle()
        await asyncio.gather(
            *(plane.objects.create(factories.pod(name=f"p{i}", **REPLICA)) for i in range(5))
        )

        async def settled() -> object:
            pending = [
                p
                for p in (await plane.objects.list(Kind.POD, "default")).items
                if not p.spec.node_name
                and (c := condition(p, "PodScheduled")) is not None
                and c.status == "False"
            ]
            return len(pending) == 2 or len(pending)

        await eventually(settled, "2 pods should be left Pending on a 3-pod node")

        async def decided() -> object:
            pods = (await plane.objects.list(Kind.POD, "default")).items
            undecided = [
                p.metadata.name
                for p in pods
                if not p.spec.node_name and condition(p, "PodScheduled") is None
            ]
            return not undecided or f"neither bound nor Pending with a reason: {undecided}"

        await idle(plane.scheduler.controller, besides=decided)
        bound = [n for n in (await plane.placements()).values() if n]
        assert len(bound) == 3, f"a node with room for 3 pods got {len(bound)}"
        pending = [p for p, n in (await plane.placements()).items() if not n]
        found = condition(await plane.pod(pending[0]), "PodScheduled")
        assert found is not None
        assert found.message == "0/1 nodes are available: 1 Too many pods."


async def test_unschedulable_pod_waits_with_reason_and_event_until_a_bigger_node_joins() -> None:
    async with Plane() as plane:
        for name in ("n1", "n2", "n3"):
            await plane.objects.create(factories.node(name=name, memory="1Gi", reason="AgentReady"))
        await plane.objects.create(
            factories.pod(
                name="big",
                **REPLICA,
                containers=[factories.container(memory="8Gi")],
            )
        )
        message = "0/3 nodes are available: 3 Insufficient memory."

        async def pending_with_reason() -> object:
            found = condition(await plane.pod("big"), "PodScheduled")
            if found is None:
                return None
            return (found.status, found.reason, found.message) == (
                "False",
                "Unschedulable",
                message,
            ) or str(found)

        await eventually(pending_with_reason, "the Pending pod does not say why")

        async def event_recorded() -> object:
            events = (await plane.objects.list(Kind.EVENT, "default")).items
            failed = [e for e in events if e.reason == "FailedScheduling"]
            return (
                len(failed) == 1
                and failed[0].type == "Warning"
                and failed[0].message == message
                and failed[0].involved_object.name == "big"
            ) or [str(e) for e in events]

        await eventually(event_recorded, "no FailedScheduling event")
        assert (await plane.pod("big")).spec.node_name == ""

        await plane.objects.create(factories.node(name="large", memory="16Gi", reason="AgentReady"))

        async def bound_to_large() -> object:
            return (await plane.pod("big")).spec.node_name == "large" or "still pending"

        await eventually(bound_to_large, "a node big enough joined but the pod stayed Pending")
        await eventually(
            lambda: _scheduled_true(plane, "big"), "PodScheduled not True after binding"
        )


async def test_heartbeats_do_not_retrigger_but_uncordon_does() -> None:
    async with Plane() as plane:
        node = factories.node(name="n1", reason="AgentReady")
        node.spec.unschedulable = True
        await plane.objects.create(node)
        await plane.objects.create(factories.pod(name="p", **REPLICA))

        async def failed_events() -> int:
            events = (await plane.objects.list(Kind.EVENT, "default")).items
            return sum(e.count for e in events if e.reason == "FailedScheduling")

        await eventually(lambda: _count_is(failed_events, 1), "no FailedScheduling event")
        for _ in range(3):  # heartbeats: only the Ready condition's timestamp moves
            fresh = await plane.objects.get(Kind.NODE, "", "n1")
            fresh.status.conditions[0].last_heartbeat_time.GetCurrentTime()
            beat = await plane.objects.update_status(fresh)

        def seen_and_done() -> object:
            """The scheduler's node cache has the last heartbeat; no event write is pending."""
            behind = plane.nodes.revision < int(beat.metadata.resource_version)
            return (not behind and not plane.scheduler._background) or "heartbeat in flight"

        await idle(plane.scheduler.controller, besides=seen_and_done)
        assert await failed_events() == 1, "node heartbeats re-ran scheduling of pending pods"
        fresh = await plane.objects.get(Kind.NODE, "", "n1")
        fresh.spec.unschedulable = False
        await plane.objects.update(fresh)

        async def bound() -> object:
            return (await plane.pod("p")).spec.node_name == "n1" or "pending"

        await eventually(bound, "uncordoning the only node did not schedule the pod")


async def _count_is(counter: Callable[[], object], want: int) -> object:
    got = await counter()  # type: ignore[misc]
    return got == want or got


async def test_a_failed_binding_un_assumes_so_the_node_is_not_left_full() -> None:
    async with Plane() as plane:
        await plane.objects.create(factories.node(name="one", pods="1", reason="AgentReady"))
        update, failures = plane.objects.update, []

        async def failing_once(message: Any) -> Any:
            if not failures:
                failures.append(message.metadata.name)
                raise Conflict("the pod changed meanwhile")
            return await update(message)

        plane.objects.update = failing_once  # type: ignore[method-assign]
        await plane.objects.create(factories.pod(name="p", **REPLICA))

        async def bound() -> object:
            return (await plane.pod("p")).spec.node_name == "one" or "not bound"

        await eventually(bound, "after a failed binding the pod never got the node's one slot")
        assert failures == ["p"]


async def test_a_deleted_pod_lets_an_unschedulable_one_in() -> None:
    async with Plane() as plane:  # the periodic retry (10 s) is later than the wait below
        await plane.objects.create(factories.node(name="one", pods="1", reason="AgentReady"))
        await plane.objects.create(factories.pod(name="first", **REPLICA))

        async def bound(name: str) -> object:
            return (await plane.pod(name)).spec.node_name == "one" or "not bound"

        await eventually(lambda: bound("first"), "the first pod was not bound")
        await plane.objects.create(factories.pod(name="second", **REPLICA))
        await eventually(
            lambda: _count_is(lambda: _failed_scheduling(plane), 1), "the second pod did not wait"
        )
        await plane.objects.delete(Kind.POD, "default", "first")
        await eventually(lambda: bound("second"), "the freed slot was not given to the waiting pod")


async def _failed_scheduling(plane: Plane) -> int:
    events = (await plane.objects.list(Kind.EVENT, "default")).items
    return sum(e.count for e in events if e.reason == "FailedScheduling")

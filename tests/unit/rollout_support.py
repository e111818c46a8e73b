"""The rollout tests' simulated control plane over the in-memory store: the deployment
controller and garbage collector with their informers (`Plane`), a `HollowAgent` doing what
scheduler, node and syncer do (bind, Running, Ready unless the image crashes), a
`SamplingStore` recording the pods after every pod write, and the Deployment these tests roll
out (`make_deployment`, tests.factories' with their settings).

Used by test_deployment_rollout (the controller), test_rollout_client and test_cli_rollout
(the client verbs over the same plane). Invariant: a Plane's tasks are all cancelled and
awaited when its `async with` ends; image tags resolve through `DIGESTS` unless a test gives
its own resolver.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.deployment import deployment_controller, revisions
from controlplane.controllers.garbage import garbage_collector
from controlplane.digests import StaticDigests, original_annotation
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore, key_prefix
from controlplane.reconcile.clock import Clock, ManualClock, settle
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import edited, idle

CRASHING = "web:crash"
D = {n: "sha256:" + str(n) * 64 for n in range(1, 10)}
DIGESTS = {"web:v1": D[1], "web:v2": D[2], "web:v3": D[3], "web:v4": D[4], "web:v5": D[5]}

# The Deployment these tests roll out: web, 3 replicas of web:v1, RollingUpdate with 25%
# surge and 25% unavailable, the manifest's progress deadline (600 s) and history (10).
make_deployment = functools.partial(
    factories.deployment,
    replicas=3,
    image="web:v1",
    strategy="RollingUpdate",
    surge="25%",
    unavailable="25%",
    deadline=600,
    history_limit=10,
)


@dataclass(frozen=True)
class Sample:
    pods: int
    available: int
    hashes: frozenset[str]


class SamplingStore(MemoryStore):
    """A MemoryStore that records the pods as they are right after every pod write."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[Sample] = []
        self.sampling = False
        self._prefix = key_prefix(Kind.POD)

    def _sample(self, key: str) -> None:
        if not self.sampling or not key.startswith(self._prefix):
            return
        pods = []
        for entry_key, entry in self._entries.items():
            if entry_key.startswith(self._prefix):
                pod = objects_pb2.Pod()
                pod.ParseFromString(entry.value)
                if pod.status.phase not in ("Succeeded", "Failed"):
                    pods.append(pod)
        available = sum(
            1
            for p in pods
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        )
        hashes = frozenset(p.metadata.labels.get("pod-template-hash", "") for p in pods)
        self.samples.append(Sample(len(pods), available, hashes))

    async def create(self, key, value):  # type: ignore[override]
        entry = await super().create(key, value)
        self._sample(key)
        return entry

    async def update(self, key, value, *, expected_revision):  # type: ignore[override]
        entry = await super().update(key, value, expected_revision=expected_revision)
        self._sample(key)
        return entry

    async def delete(self, key, *, expected_revision=None):  # type: ignore[override]
        entry = await super().delete(key, expected_revision=expected_revision)
        self._sample(key)
        return entry


class HollowAgent:
    """What scheduler + node + syncer do, in a loop: bind new pods and report them Running
    and Ready, except pods whose image crashes (Running, never Ready)."""

    def __init__(self, objects: ObjectStore, clock: Clock) -> None:
        self._objects = objects
        self._clock = clock
        self.crashing = {CRASHING}

    async def run(self) -> None:
        while True:
            for pod in (await self._objects.list(Kind.POD, "default")).items:
                if pod.spec.node_name:
                    continue
                try:
                    pod.spec.node_name = "n1"
                    pod = await self._objects.update(pod)
                    pod.status.phase = "Running"
                    image = pod.spec.containers[0].image
                    original = pod.metadata.annotations.get(original_annotation("main"), image)
                    if original not in self.crashing and image not in self.crashing:
                        ready = pod.status.conditions.add(type="Ready", status="True")
                        ready.last_transition_time.FromNanoseconds(int(self._clock.now() * 1e9))
                    await self._objects.update_status(pod)
                except Exception:  # deleted or changed meanwhile: next round
                    continue
            await asyncio.sleep(0.002)


class Plane:
    def __init__(
        self,
        store: MemoryStore,
        *,
        clock: ManualClock | None = None,
        resolver: StaticDigests | None = None,
    ) -> None:
        self.clock = clock
        self.objects = ObjectStore(store, clock=clock.now) if clock else ObjectStore(store)
        self.resolver = resolver or StaticDigests(DIGESTS)
        self.informers = {
            kind: Informer(self.objects, kind, clock=clock)
            for kind in (Kind.DEPLOYMENT, Kind.REPLICASET, Kind.POD)
        }
        events = EventRecorder(self.objects, component="deployment-controller", clock=clock)
        self.controller = deployment_controller(
            self.objects,
            deployments=self.informers[Kind.DEPLOYMENT],
            replicasets=self.informers[Kind.REPLICASET],
            pods=self.informers[Kind.POD],
            events=events,
            clock=clock,
            resolver=self.resolver,
        )
        self.agent = HollowAgent(self.objects, clock or _Wall())
        self.collector = garbage_collector(self.objects, informers=self.informers)
        self.runnables = [*self.informers.values(), self.controller, self.collector]
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Plane:
        for runnable in self.runnables:
            self.tasks.append(asyncio.create_task(runnable.run(), name=runnable.name))
        self.tasks.append(asyncio.create_task(self.agent.run(), name="hollow-agent"))
        await settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def deployment(self) -> objects_pb2.Deployment:
        return await self.objects.get(Kind.DEPLOYMENT, "default", "web")

    async def change(self, edit: Callable[[objects_pb2.Deployment], None]) -> None:
        await edited(self.objects, Kind.DEPLOYMENT, "default", "web", edit)

    async def quiet(self) -> None:
        """Wait until the hollow agent has run every pod and the controllers have acted on
        every change: with a ManualClock, nothing moves any more until the clock does."""

        async def all_bound() -> object:
            unbound = [p.metadata.name for p in await self.pods() if not p.spec.node_name]
            return not unbound or f"pods the hollow agent has yet to run: {unbound}"

        await idle(self.controller, self.collector, besides=all_bound)

    async def pods(self) -> list[objects_pb2.Pod]:
        return list((await self.objects.list(Kind.POD, "default")).items)

    async def replicasets(self) -> dict[int, objects_pb2.ReplicaSet]:
        items = (await self.objects.list(Kind.REPLICASET, "default")).items
        return {revisions.revision_of(rs): rs for rs in items}

    async def events(self) -> list[objects_pb2.Event]:
        return list((await self.objects.list(Kind.EVENT, "default")).items)

    async def rolled_out(self, replicas: int, image: str, what: str) -> None:
        """Wait until `replicas` pods, all of `image` (as tagged or pinned) and Ready, and the
        Deployment says the rollout is complete."""

        async def check() -> object:
            d = await self.deployment()
            pods = await self.pods()
            images = {p.metadata.annotations.get(original_annotation("main"), "") for p in pods}
            ready = sum(1 for p in pods if any(c.type == "Ready" for c in p.status.conditions))
            progressing = {c.type: c.reason for c in d.status.conditions}.get("Progressing")
            s = d.status
            state = (
                len(pods),
                ready,
                images,
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                progressing,
            )
            want_images = {image} if replicas else set()
            want = (replicas, replicas, want_images, replicas, replicas, replicas)
            return (state[:6] == want and progressing == "NewReplicaSetAvailable") or str(state)

        await eventually(check, what)


class _Wall:
    def now(self) -> float:
        import time

        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def eventually(check: Callable[[], object], what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result is None or result is True:
            return
        if loop.time() > deadline:
            pytest.fail(f"{what}: still {result!r}")
        await asyncio.sleep(0.005)

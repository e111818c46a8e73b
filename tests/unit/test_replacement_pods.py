"""Fresh names for replacement pods (issue 12): a pod that replaces an evicted one is a new pod
with a name and uid that never existed, as in Kubernetes (generateName), and creation stays
exact without deterministic names: the controller waits to observe its own creates
(expectations), so a lagging pod informer never makes it create a pod twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from controlplane.objects import ObjectStore
from controlplane.store import Change
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.test_deployment_controller import Plane, pods_of, wait_for_pods


class LaggingStore:
    """A MemoryStore whose watchers see every change `lag` seconds late (a slow informer)."""

    def __init__(self, lag: float) -> None:
        self.inner = MemoryStore()
        self.lag = lag

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        async for change in self.inner.watch(prefix, since=since):
            await asyncio.sleep(self.lag)
            yield change


async def test_replacements_of_evicted_pods_have_names_and_uids_never_seen_before() -> None:
    store = MemoryStore()
    async with Plane(store) as plane:
        await plane.objects.create(factories.deployment(replicas=4))
        pods = await wait_for_pods(plane.objects, 4)
        names = {p.metadata.name for p in pods}
        uids = {p.metadata.uid for p in pods}
        for pod in pods[:2]:  # the node-lifecycle controller evicts two of them
            await plane.objects.delete(Kind.POD, "default", pod.metadata.name)
        pods = await wait_for_pods(plane.objects, 4)
    fresh = [p for p in pods if p.metadata.uid not in uids]
    assert len(fresh) == 2, "the two evicted pods were not replaced"
    for pod in fresh:
        assert pod.metadata.name not in names, (
            f"replacement {pod.metadata.name} reuses an evicted pod's name"
        )


async def test_a_lagging_informer_never_makes_the_controller_create_twice() -> None:
    store = LaggingStore(lag=0.05)
    objects = ObjectStore(store)  # type: ignore[arg-type]
    most = 0
    async with Plane(store.inner, objects=objects) as plane:
        await plane.objects.create(factories.deployment(replicas=6))
        for _ in range(3000):  # up to 30 s on a loaded machine
            count = len(await pods_of(plane.objects))
            most = max(most, count)
            if count == 6:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # every create observed, passes done: anything extra shows
        final = await pods_of(plane.objects)
        most = max(most, len(final))
    assert most == 6 and len(final) == 6, (
        f"{most} pods at most, {len(final)} at the end: a pass acted before its creates showed"
    )

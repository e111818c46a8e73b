"""CLI watches retry through a short etcd outage (issue 12): `rollout status` and `get -w` wait
it out and carry on, instead of exiting 1 when etcd is briefly unavailable.

The API servicers run over a memory store that can be made "unavailable" as etcd would be:
every call and every open watch fails with `Unavailable` until it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from controlplane.api.server import ApiServer
from controlplane.objects import ObjectStore
from controlplane.store import Change, Unavailable
from controlplane.store.memory import MemoryStore
from pilothouse.cli import watching
from pilothouse.client import ChangeType, Client
from pilothouse.kinds import Kind
from tests import factories
from tests.unit.cli_support import Cli


class FlakyStore:
    """A MemoryStore that fails every call and every open watch while `down`."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False
        self._outage = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise Unavailable("etcd is down (test)")
            return await attr(*args, **kwargs)

        return call

    def outage(self) -> None:
        self.down = True
        self._outage.set()
        self._outage = asyncio.Event()

    def restore(self) -> None:
        self.down = False

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        if self.down:
            raise Unavailable("etcd is down (test)")
        outage = asyncio.ensure_future(self._outage.wait())
        changes = aiter(self.inner.watch(prefix, since=since))
        try:
            while True:
                step = asyncio.ensure_future(anext(changes))
                done, _ = await asyncio.wait({step, outage}, return_when=asyncio.FIRST_COMPLETED)
                if step not in done:
                    step.cancel()
                    raise Unavailable("etcd is down (test)")
                try:
                    yield step.result()
                except StopAsyncIteration:
                    return
        finally:
            outage.cancel()


async def _serving(store: FlakyStore) -> tuple[ApiServer, str]:
    api = ApiServer(objects=ObjectStore(store), listen="127.0.0.1:0")  # type: ignore[arg-type]
    return api, await api.start()


async def test_follow_resumes_after_an_outage_without_repeating_changes() -> None:
    store = FlakyStore()
    api, address = await _serving(store)
    retries: list[str] = []
    try:
        async with Client(address) as client:
            await client.apply(factories.deployment(name="a", replicas=1))
            seen: list[tuple[ChangeType, str]] = []

            async def watch() -> None:
                async for change in watching.follow(
                    client, Kind.DEPLOYMENT, namespace="default", on_retry=retries.append
                ):
                    if change.object is not None and change.type is not ChangeType.BOOKMARK:
                        seen.append((change.type, change.object.metadata.name))  # type: ignore[attr-defined]
                    if len(seen) == 2:
                        return

            task = asyncio.create_task(watch())
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            store.outage()
            for _ in range(500):
                if retries:
                    break
                await asyncio.sleep(0.01)
            assert retries, "the watch did not notice the outage"
            store.restore()
            await client.apply(factories.deployment(name="b", replicas=1))
            await asyncio.wait_for(task, 10)
            assert seen == [(ChangeType.ADDED, "a"), (ChangeType.ADDED, "b")], (
                f"changes were lost or repeated across the outage: {seen}"
            )
            assert "etcd is" in retries[0], retries
    finally:
        await api.stop()


async def _until(what: str, check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_rollout_status_waits_out_a_short_etcd_outage() -> None:
    store = FlakyStore()
    api, address = await _serving(store)
    try:
        async with Client(address) as client:
            await client.apply(factories.deployment(name="web", replicas=2))
        pilothouse = Cli(address)
        task, out = pilothouse.start("rollout", "status", "deployment/web")
        err = pilothouse.err
        # No controller runs: the rollout waits, and its status is being watched.
        await _until("status watched", lambda: "Waiting" in out.getvalue())
        store.outage()
        await _until("outage noticed", lambda: "retrying" in err.getvalue())
        store.restore()
        async with Client(address) as client:
            d = await client.get(Kind.DEPLOYMENT, "web")
        d.status.observed_generation = d.metadata.generation  # type: ignore[attr-defined]
        for field in ("replicas", "updated_replicas", "ready_replicas", "available_replicas"):
            setattr(d.status, field, 2)  # type: ignore[attr-defined]
        await ObjectStore(store.inner).update_status(d)
        code = await asyncio.wait_for(task, 20)
        assert code == 0, f"rollout status failed through an etcd outage:\n{err.getvalue()}"
        assert 'deployment "web" successfully rolled out' in out.getvalue()
        assert "etcd is" in err.getvalue(), "the outage was not explained on stderr"
    finally:
        await api.stop()

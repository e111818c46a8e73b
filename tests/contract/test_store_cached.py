"""The Store contract again, through the watch cache: every test of tests/contract/test_store.py
that takes a `store` runs here against a `WatchCache` over memory and over etcd, so reads and
watches served from the cache keep every promise the backends keep.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest

from controlplane.store import Store
from controlplane.store.watchcache import WatchCache
from tests.contract import test_store as contract
from tests.unit.waiting import eventually

globals().update(
    {
        name: test
        for name, test in vars(contract).items()
        if name.startswith("test_") and "store" in inspect.signature(test).parameters
    }
)


@pytest.fixture(params=["memory", "etcd"])
def backend(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
async def store(backend: Store) -> AsyncIterator[WatchCache]:
    cache = WatchCache(backend)  # type: ignore[arg-type]
    feeding = asyncio.create_task(cache.run())
    try:
        await eventually(lambda: cache.synced, "the watch cache loads")
        yield cache
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await cache.close()

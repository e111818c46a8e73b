"""The CLI rollout tests' rig: the rollout plane (tests.unit.rollout_support) behind the real
API servicers, with a `Cli` (tests.unit.cli_support) pointed at them, and what those tests
share: the words `rollout status` prints, the manifest `diff` reads, a rolled-out web.

Invariant: `running()` stops the API server and closes the store when its block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from controlplane.api.server import ApiServer
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock
from controlplane.store.memory import MemoryStore
from pilothouse.client import Client
from pilothouse.v1 import objects_pb2
from tests.unit.cli_support import Cli
from tests.unit.rollout_support import (
    Plane,
    make_deployment,
)

WAITING = 'Waiting for deployment "web" rollout to finish: '
DONE = 'deployment "web" successfully rolled out'

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: web:v1
"""


@contextlib.asynccontextmanager
async def running(clock: ManualClock | None = None) -> AsyncIterator[tuple[Plane, Cli]]:
    store = MemoryStore()
    objects = ObjectStore(store, clock=clock.now) if clock else ObjectStore(store)
    api = ApiServer(objects=objects, listen="127.0.0.1:0")
    address = await api.start()
    try:
        async with Plane(store, clock=clock) as plane:
            yield plane, Cli(address)
    finally:
        await api.stop()
        await store.close()


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Plane, Cli]]:
    """The rig of `running()` for one test (import it by name into the test module)."""
    async with running() as rig:
        yield rig


async def create(pilothouse: Cli, deployment: objects_pb2.Deployment) -> None:
    """Through the API, as a person's apply goes: defaults included, as later writes get them."""
    async with Client(pilothouse.address) as client:
        await client.apply(deployment)


async def rolled_out_web(plane: Plane, pilothouse: Cli, replicas: int = 3) -> None:
    await create(pilothouse, make_deployment(replicas=replicas))
    await plane.rolled_out(replicas, "web:v1", "the first rollout never completed")

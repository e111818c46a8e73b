"""The probe tests' agent: a PodManager over FakeRuntime whose probes are answered by a
`ScriptedHandler` (told apart by their exec command: LIVE, READY, START), the `probe()` and
pod (`make_pod`) they give it, and how they read the pod (`condition`, `status`, `is_ready`).
Used by test_probes and test_pod_events, on virtual time (tests.unit.virtual_time).

Invariant: a Node's `async with` ends with no container left (it syncs an empty set first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from nodeagent.images import ImageConfig
from nodeagent.images.fake import FakeImageService
from nodeagent.pods.manager import PodManager
from nodeagent.pods.restart import BackoffConfig
from nodeagent.pods.worker import WorkerConfig
from nodeagent.probes import SUCCESS, Kind, Result, Target
from nodeagent.runtime.fake import FakeRuntime
from pilothouse.v1 import objects_pb2
from tests import factories

LIVE, READY, START = "live", "ready", "start"
KIND_OF = {LIVE: Kind.LIVENESS, READY: Kind.READINESS, START: Kind.STARTUP}


class ScriptedHandler:
    """Answers each probe (told apart by its exec command) from a script; records every check."""

    def __init__(self) -> None:
        self.script: dict[Kind, Callable[[Target], Result]] = {}
        self.checks: list[tuple[Kind, str, float]] = []  # kind, container id, loop time

    async def check(self, probe: objects_pb2.Probe, target: Target, *, time_limit: float) -> Result:
        kind = KIND_OF[probe.exec.command[0]]
        self.checks.append((kind, target.container_id, asyncio.get_running_loop().time()))
        answer = self.script.get(kind, lambda _t: SUCCESS)
        return answer(target)

    def count(self, kind: Kind, container_id: str | None = None) -> int:
        return sum(1 for k, c, _ in self.checks if k is kind and container_id in (None, c))


def probe(
    command: str,
    *,
    period: int = 1,
    failure_threshold: int = 3,
    success_threshold: int = 0,
    initial_delay: int = 0,
    grace: int | None = None,
) -> objects_pb2.Probe:
    p = objects_pb2.Probe(
        exec=objects_pb2.ExecAction(command=[command]),
        period_seconds=period,
        failure_threshold=failure_threshold,
        success_threshold=success_threshold,
        initial_delay_seconds=initial_delay,
        timeout_seconds=1,
    )
    if grace is not None:
        p.termination_grace_period_seconds = grace
    return p


def make_pod(
    *,
    liveness: objects_pb2.Probe | None = None,
    readiness: objects_pb2.Probe | None = None,
    startup: objects_pb2.Probe | None = None,
    ignore_sigterm: bool = False,
    grace: int = 5,
) -> objects_pb2.Pod:
    """The pod these tests probe (tests.factories.pod): web (uid-1) on n1, 5 s grace, one
    container "app" with the probes given."""
    app = factories.container(name="app")
    for field, given in (
        ("liveness_probe", liveness),
        ("readiness_probe", readiness),
        ("startup_probe", startup),
    ):
        if given is not None:
            getattr(app, field).CopyFrom(given)
    knobs = {"ignore-sigterm": "true"} if ignore_sigterm else None
    return factories.pod(uid="uid-1", node="n1", knobs=knobs, grace=grace, containers=[app])


class Node:
    def __init__(self, state_dir: Path) -> None:
        self.handler = ScriptedHandler()
        self.runtime = FakeRuntime()
        self.images = FakeImageService(
            configs={"busybox:stable": ImageConfig(entrypoint=("/bin/sh",), cmd=("-c", "x"))}
        )
        self.config = WorkerConfig(
            state_dir=state_dir,
            restart_backoff=BackoffConfig(initial=1, maximum=10, jitter=0),
            probes=self.handler,
        )
        self.manager = PodManager(runtime=self.runtime, images=self.images, config=self.config)

    async def restart_agent(self) -> None:
        """A new agent process over the same containers and state dir (re-adoption)."""
        await self.manager.close()
        self.runtime = self.runtime.restarted()
        self.manager = PodManager(runtime=self.runtime, images=self.images, config=self.config)
        await self.manager.start()

    async def __aenter__(self) -> Node:
        await self.manager.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.sync([])
        for _ in range(200):
            if not await self.runtime.list():
                break
            await asyncio.sleep(0.1)
        await self.manager.close()

    def pod(self) -> objects_pb2.Pod | None:
        pods = self.manager.pods()
        return pods[0] if pods else None

    async def until(
        self, what: str, check: Callable[[objects_pb2.Pod], bool], *, within: float = 120
    ) -> objects_pb2.Pod:
        """Wait (virtual seconds) until the pod satisfies `check`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            pod = self.pod()
            if pod is not None and pod.status.container_statuses and check(pod):
                return pod
            await asyncio.sleep(0.05)
        raise AssertionError(f"the pod never became {what}; last seen:\n{self.pod()}")


def condition(pod: objects_pb2.Pod, kind: str) -> objects_pb2.Condition:
    return next(c for c in pod.status.conditions if c.type == kind)


def status(pod: objects_pb2.Pod) -> objects_pb2.ContainerStatus:
    return pod.status.container_statuses[0]


def is_ready(pod: objects_pb2.Pod) -> bool:
    return condition(pod, "Ready").status == "True"

"""The pod tests' agent (PodManager over FakeRuntime + FakeImageService): `Node`, one agent's
view whose fake runtime survives `restart_agent`; `make_pod`, the pod they give it; and how
they read a pod's state (`state_of`, `running`). Used by test_pods, test_pod_events and
test_nodesync_events.

Invariant: busybox:stable is the one image with a config (entrypoint /bin/sh, env A=image);
back-offs are FAST (50 ms doubling to 200 ms, no jitter), so restart tests take milliseconds.
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
from nodeagent.runtime.fake import FakeRuntime
from pilothouse.v1 import objects_pb2
from tests import factories

FAST = BackoffConfig(initial=0.05, maximum=0.2, multiplier=2, reset_after=600, jitter=0)


def make_pod(
    name: str = "web",
    *,
    uid: str = "uid-1",
    image: str = "busybox:stable",
    restart_policy: str = "",
    knobs: dict[str, str] | None = None,
    grace: int = 1,
    containers: tuple[str, ...] = ("app",),
    command: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
) -> objects_pb2.Pod:
    """The pod these tests give the agent (tests.factories.pod): bound to n1, uid-1, 1 s
    grace, one container "app" (or one per name in `containers`) running `image`."""
    return factories.pod(
        name=name,
        uid=uid,
        node="n1",
        knobs=knobs,
        restart_policy=restart_policy,
        grace=grace,
        containers=[
            factories.container(name=c, image=image, command=command, args=args) for c in containers
        ],
    )


class Node:
    """One agent's view: a fake runtime (that survives `restart_agent`) and a PodManager."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.runtime = FakeRuntime()
        self.images = FakeImageService(
            configs={
                "busybox:stable": ImageConfig(
                    entrypoint=("/bin/sh",), cmd=("-c", "sleep 1d"), env=("A=image",)
                )
            }
        )
        self.manager = self._manager()
        self._started = False

    def _manager(self) -> PodManager:
        config = WorkerConfig(
            state_dir=self.state_dir,
            host_ip="10.0.0.7",
            restart_backoff=FAST,
            image_backoff=FAST,
        )
        return PodManager(runtime=self.runtime, images=self.images, config=config)

    async def sync(self, *pods: objects_pb2.Pod) -> dict[str, str]:
        if not self._started:
            await self.manager.start()
            self._started = True
        return await self.manager.sync(list(pods))

    async def restart_agent(self) -> None:
        await self.manager.close()
        self.runtime = self.runtime.restarted()
        self.manager = self._manager()
        await self.manager.start()

    async def close(self) -> None:
        await self.manager.close()

    def pod(self, name: str = "web") -> objects_pb2.Pod | None:
        found = [p for p in self.manager.pods() if p.metadata.name == name]
        return found[0] if found else None

    async def until(
        self, what: str, check: Callable[[objects_pb2.Pod | None], bool], name: str = "web"
    ) -> objects_pb2.Pod | None:
        for _ in range(500):
            pod = self.pod(name)
            if check(pod):
                return pod
            await asyncio.sleep(0.01)
        raise AssertionError(f"pod {name} never became {what}; last seen:\n{self.pod(name)}")


def state_of(pod: objects_pb2.Pod | None, index: int = 0) -> str:
    if pod is None or not pod.status.container_statuses:
        return ""
    s = pod.status.container_statuses[index].state
    if s.HasField("running"):
        return "running"
    if s.HasField("terminated"):
        return "terminated"
    return f"waiting:{s.waiting.reason}" if s.HasField("waiting") else ""


def running(pod: objects_pb2.Pod | None) -> bool:
    return pod is not None and pod.status.phase == "Running" and state_of(pod) == "running"

"""The HorizontalPodAutoscaler controller on a fake clock with made-up usage: scale up under
load (bounded by the scale-up policy and maxReplicas), nothing within the 10 % tolerance,
scale down only after the stabilization window, a target of a kind that cannot scale."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.cache.informer import Informer
from controlplane.controllers.autoscaler import (
    Settings,
    algorithm,
    horizontal_pod_autoscaler_controller,
)
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane

SYNC = 15.0


@dataclass
class Usage:
    cpu_millis: float
    memory_bytes: int = 0


def hpa(
    *, kind: str = "Deployment", window: int = 60, target: int = 50
) -> objects_pb2.HorizontalPodAutoscaler:
    h = objects_pb2.HorizontalPodAutoscaler()
    h.metadata.name, h.metadata.namespace = "web", "default"
    h.spec.scale_target_ref.kind, h.spec.scale_target_ref.name = kind, "web"
    h.spec.max_replicas = 5
    metric = h.spec.metrics.add(type="Resource")
    metric.resource.name = "cpu"
    metric.resource.target.type = "Utilization"
    metric.resource.target.average_utilization = target
    h.spec.behavior.scale_down.stabilization_window_seconds = window
    manifests.set_defaults(h)
    return h


class Cluster:
    def __init__(self, clock: ManualClock) -> None:
        self.usage: dict[str, Usage] = {}
        objects = ObjectStore(MemoryStore(), clock=clock.now)

        async def source(namespace: str) -> dict[str, Usage]:
            return dict(self.usage)

        def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
            return [
                horizontal_pod_autoscaler_controller(
                    objects,
                    autoscalers=informers[Kind.HORIZONTALPODAUTOSCALER],
                    pods=informers[Kind.POD],
                    metrics_source=source,
                    events=EventRecorder(objects, component="horizontal-pod-autoscaler"),
                    settings=Settings(sync_period=SYNC),
                    clock=clock,
                )
            ]

        self.plane = Plane(
            (Kind.HORIZONTALPODAUTOSCALER, Kind.POD), build, clock=clock, objects=objects
        )

    async def pods(self, count: int) -> None:
        for i in range(count):
            pod = factories.pod(name=f"web-{i}", labels={"app": "web"})
            pod.spec.containers[0].resources.requests["cpu"] = "100m"
            created = await self.plane.objects.create(pod)
            created.status.phase = "Running"
            created.status.conditions.add(type="Ready", status="True")
            await self.plane.objects.update_status(created)

    async def replicas(self) -> int:
        d = await self.plane.objects.get(Kind.DEPLOYMENT, "default", "web")
        return d.spec.replicas


async def test_scales_up_under_load_and_down_after_the_window() -> None:
    clock = ManualClock()
    c = Cluster(clock)
    async with c.plane as p:
        await p.objects.create(factories.deployment(replicas=2))
        await c.pods(2)
        c.usage = {"web-0": Usage(180), "web-1": Usage(180)}  # 180 % of request, target 50 %
        await p.objects.create(hpa(window=60))
        # 2 pods at 3.6x target want 8; the scale-up policy allows +100 % or +4 (6); max is 5.
        await eventually(lambda: _is(c.replicas, 5), "the HPA did not scale up to max 5")
        status = (await p.objects.get(Kind.HORIZONTALPODAUTOSCALER, "default", "web")).status
        assert status.current_metrics[0].resource.current.average_utilization == 180
        assert status.desired_replicas == 5
        # Within tolerance (53 % for 50 %): nothing changes, however many syncs.
        c.usage = {"web-0": Usage(53), "web-1": Usage(53)}
        for _ in range(2):
            await clock.advance(SYNC)
            await settle()
        assert await c.replicas() == 5
        # Idle: 10 % wants 1, but the scale-down window (60 s) still holds the 5 of 2 syncs ago.
        c.usage = {"web-0": Usage(10), "web-1": Usage(10)}
        await clock.advance(SYNC)
        await settle()
        assert await c.replicas() == 5, "scaled down inside the stabilization window"
        for _ in range(5):
            await clock.advance(SYNC)
            await settle()
        await eventually(lambda: _is(c.replicas, 1), "no scale-down after the window")


async def test_a_target_that_cannot_scale_is_a_condition() -> None:
    clock = ManualClock()
    c = Cluster(clock)
    async with c.plane as p:
        broken = hpa()
        broken.spec.scale_target_ref.kind = "Pod"  # refused at apply; stored by hand here
        await p.objects.create(broken)

        async def refused() -> object:
            got = await p.objects.get(Kind.HORIZONTALPODAUTOSCALER, "default", "web")
            able = [c for c in got.status.conditions if c.type == "AbleToScale"]
            ok = able and able[0].status == "False" and able[0].reason == "FailedGetScale"
            return ok or able

        await eventually(refused, "no AbleToScale=False for a Pod target")


def test_tolerance_missing_and_unready_pods() -> None:
    sample = algorithm.PodSample
    # 54 % of 50 %: within 10 %.
    same = algorithm.utilization_proposal(
        current_replicas=3, samples=[sample(54, 100)] * 3, missing=0, target_percent=50
    )
    assert same.replicas == 3
    # Scaling up: a pod without a sample counts as 0 → 2 pods at 100 % + 1 at 0 = ratio 4/3.
    up = algorithm.utilization_proposal(
        current_replicas=3, samples=[sample(100, 100)] * 2, missing=1, target_percent=50
    )
    assert up.replicas == 4
    # Scaling down: a pod without a sample counts as 100 % of its request: 10+10+100 over 3.
    down = algorithm.utilization_proposal(
        current_replicas=3, samples=[sample(10, 100)] * 2, missing=1, target_percent=50
    )
    assert down.replicas == 3  # ceil(0.8 * 3)


async def _is(read, wanted: int) -> bool:  # type: ignore[no-untyped-def]
    return await read() == wanted

"""The StatefulSet controller over the memory store: ordinal names made in order, a claim per
ordinal that outlives its pod, one pod per ordinal even while the old one terminates,
Parallel management, scale down from the top, RollingUpdate with a partition, OnDelete."""

from __future__ import annotations

from controlplane.cache.informer import Informer
from controlplane.controllers.statefulset import StatefulSetReconciler
from controlplane.objects import ObjectStore
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import settle
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import edited, eventually
from tests.unit.workload_support import Plane, set_phase


def plane(*, graceful: bool = False) -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            StatefulSetReconciler(
                objects=objects,
                statefulsets=informers[Kind.STATEFULSET],
                pods=informers[Kind.POD],
                controllerrevisions=informers[Kind.CONTROLLERREVISION],
            ).controller()
        ]

    objects = ObjectStore(MemoryStore())
    if graceful:
        objects.graceful_pods = True
    return Plane(
        (Kind.STATEFULSET, Kind.POD, Kind.CONTROLLERREVISION, Kind.PERSISTENTVOLUMECLAIM),
        build,
        objects=objects,
    )


async def create(p: Plane, sts: objects_pb2.StatefulSet) -> None:
    manifests.set_defaults(sts)
    assert manifests.validate(sts) == []
    await p.objects.create(sts)


def names(p: Plane) -> list[str]:
    return [x.metadata.name for x in p.pods() if is_active(x)]


async def run_ready(p: Plane) -> None:
    """The fake node: every Pending pod starts and becomes Ready."""
    for pod in p.pods():
        if pod.status.phase == "Pending" and is_active(pod):
            await set_phase(p.objects, pod, "Running", ready=True)


async def running(p: Plane, count: int) -> bool:
    """Play the node until `count` pods run."""
    await run_ready(p)
    return sum(1 for x in p.pods() if x.status.phase == "Running" and is_active(x)) == count


async def test_ordered_ready_makes_pods_one_by_one_with_their_claims() -> None:
    async with plane() as p:
        await create(p, factories.stateful_set(replicas=3, claims=["data"]))
        await eventually(lambda: names(p) == ["web-0"], "web-0 first")
        await settle()
        assert names(p) == ["web-0"], "web-1 was made before web-0 was Ready"
        for expected in (["web-0", "web-1"], ["web-0", "web-1", "web-2"]):
            await run_ready(p)
            await eventually(lambda e=expected: names(p) == e, f"then {expected[-1]}")
        await run_ready(p)
        pod = p.informers[Kind.POD].get("default", "web-1")
        assert (pod.spec.hostname, pod.spec.subdomain) == ("web-1", "web")
        assert pod.metadata.labels["statefulset.kubernetes.io/pod-name"] == "web-1"
        [volume] = pod.spec.volumes
        assert volume.persistent_volume_claim.claim_name == "data-web-1"
        claims = sorted(
            c.metadata.name
            for c in (await p.objects.list(Kind.PERSISTENTVOLUMECLAIM, "default")).items
        )
        assert claims == ["data-web-0", "data-web-1", "data-web-2"]
        await eventually(
            lambda: p.informers[Kind.STATEFULSET].get("default", "web").status.ready_replicas == 3,
            "readyReplicas",
        )


async def test_a_deleted_pod_comes_back_with_its_name_and_claim_never_twice() -> None:
    async with plane(graceful=True) as p:
        await create(p, factories.stateful_set(replicas=2, claims=["data"], parallel=True))
        await eventually(lambda: names(p) == ["web-0", "web-1"], "two pods")
        for pod in p.pods():
            bound = await p.objects.get(Kind.POD, "default", pod.metadata.name)
            bound.spec.node_name = "n1"
            await p.objects.update(bound)
        await run_ready(p)
        old = p.informers[Kind.POD].get("default", "web-1")
        await p.objects.delete(Kind.POD, "default", "web-1")  # graceful: Terminating
        await eventually(
            lambda: (
                p.informers[Kind.POD]
                .get("default", "web-1")
                .metadata.HasField("deletion_timestamp")
            ),
            "web-1 is not terminating",
        )
        await settle()
        same = p.informers[Kind.POD].get("default", "web-1")
        assert same.metadata.uid == old.metadata.uid, "a second web-1 while the first terminates"
        await p.objects.delete(Kind.POD, "default", "web-1", grace_period_seconds=0)  # node: gone
        await eventually(
            lambda: (
                (x := p.informers[Kind.POD].get("default", "web-1")) is not None
                and x.metadata.uid != old.metadata.uid
            ),
            "web-1 did not come back",
        )
        again = p.informers[Kind.POD].get("default", "web-1")
        assert again.spec.volumes[0].persistent_volume_claim.claim_name == "data-web-1"


async def test_scale_down_goes_from_the_highest_ordinal() -> None:
    async with plane() as p:
        await create(p, factories.stateful_set(replicas=3, parallel=True))
        await eventually(lambda: len(names(p)) == 3, "three pods")
        await run_ready(p)
        await edited(
            p.objects, Kind.STATEFULSET, "default", "web", lambda s: setattr(s.spec, "replicas", 1)
        )
        await eventually(lambda: names(p) == ["web-0"], "scaled down to web-0")


async def test_rolling_update_respects_the_partition() -> None:
    async with plane() as p:
        await create(p, factories.stateful_set(replicas=3, image="busybox:1"))
        await eventually(lambda: running(p, 3), "three pods running")

        def partitioned(s: objects_pb2.StatefulSet) -> None:
            s.spec.update_strategy.rolling_update.partition = 1
            s.spec.template.spec.containers[0].image = "busybox:2"

        await edited(p.objects, Kind.STATEFULSET, "default", "web", partitioned)

        def images() -> dict[str, str]:
            return {x.metadata.name: x.spec.containers[0].image for x in p.pods() if is_active(x)}

        wanted = {"web-0": "busybox:1", "web-1": "busybox:2", "web-2": "busybox:2"}

        async def rolled() -> bool:
            await run_ready(p)
            return images() == wanted and all(x.status.phase == "Running" for x in p.pods())

        await eventually(rolled, "web-2 then web-1 updated, web-0 kept below the partition")
        await settle()
        assert images() == wanted

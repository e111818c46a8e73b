"""The DaemonSet controller over the memory store: one pod per eligible node, nodes joining
and leaving, nodeSelector and taints, a cordoned node keeping its pod, RollingUpdate one node
at a time with ControllerRevisions, OnDelete."""

from __future__ import annotations

from controlplane.cache.informer import Informer
from controlplane.controllers.daemonset import DaemonSetReconciler
from controlplane.objects import ObjectStore, revisions
from controlplane.objects.pods import is_active
from controlplane.reconcile.clock import settle
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import edited, eventually
from tests.unit.workload_support import Plane, set_phase


def plane() -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            DaemonSetReconciler(
                objects=objects,
                daemonsets=informers[Kind.DAEMONSET],
                pods=informers[Kind.POD],
                nodes=informers[Kind.NODE],
                controllerrevisions=informers[Kind.CONTROLLERREVISION],
            ).controller()
        ]

    return Plane((Kind.DAEMONSET, Kind.POD, Kind.NODE, Kind.CONTROLLERREVISION), build)


def placed(p: Plane) -> dict[str, str]:
    """node -> image of the DaemonSet pod there."""
    return {x.spec.node_name: x.spec.containers[0].image for x in p.pods() if is_active(x)}


async def create(p: Plane, ds: objects_pb2.DaemonSet) -> None:
    manifests.set_defaults(ds)
    assert manifests.validate(ds) == []
    await p.objects.create(ds)


async def test_one_pod_per_node_as_nodes_come_and_go() -> None:
    async with plane() as p:
        for name in ("n1", "n2", "n3"):
            await p.objects.create(factories.node(name=name))
        await create(p, factories.daemon_set())
        await eventually(lambda: sorted(placed(p)) == ["n1", "n2", "n3"], "a pod per node")
        await p.objects.create(factories.node(name="n4"))
        await eventually(lambda: "n4" in placed(p), "the joining node got no pod")
        await p.objects.delete(Kind.NODE, "", "n2")
        await eventually(lambda: sorted(placed(p)) == ["n1", "n3", "n4"], "n2's pod stayed")
        # Cordoned: still eligible (DaemonSet pods tolerate unschedulable).
        await edited(
            p.objects, Kind.NODE, "", "n1", lambda n: setattr(n.spec, "unschedulable", True)
        )
        await settle()
        assert "n1" in placed(p), "a cordoned node lost its DaemonSet pod"
        ds = await p.objects.get(Kind.DAEMONSET, "default", "agent")
        await eventually(
            lambda: (
                p.informers[Kind.DAEMONSET].get("default", "agent").status.current_number_scheduled
                == 3
            ),
            "status",
        )
        assert ds.metadata.name == "agent"


async def test_node_selector_and_taints_choose_the_nodes() -> None:
    async with plane() as p:
        await p.objects.create(factories.node(name="n1", labels={"disk": "ssd"}))
        await p.objects.create(factories.node(name="n2"))
        tainted = factories.node(name="n3", labels={"disk": "ssd"})
        tainted.spec.taints.add(key="dedicated", value="db", effect="NoSchedule")
        await p.objects.create(tainted)
        await create(p, factories.daemon_set(node_selector={"disk": "ssd"}))
        await eventually(lambda: sorted(placed(p)) == ["n1"], "only n1 fits")
        tolerant = objects_pb2.Toleration(
            key="dedicated", operator="Equal", value="db", effect="NoSchedule"
        )
        await edited(
            p.objects,
            Kind.DAEMONSET,
            "default",
            "agent",
            lambda d: d.spec.template.spec.tolerations.append(tolerant),
        )
        await eventually(lambda: sorted(placed(p)) == ["n1", "n3"], "the toleration let n3 in")
        await edited(p.objects, Kind.NODE, "", "n1", lambda n: n.metadata.labels.pop("disk"))
        await eventually(lambda: sorted(placed(p)) == ["n3"], "n1 stopped matching: pod stays")


async def test_rolling_update_replaces_one_node_at_a_time_and_records_revisions() -> None:
    async with plane() as p:
        for name in ("n1", "n2", "n3"):
            await p.objects.create(factories.node(name=name))
        await create(p, factories.daemon_set(image="busybox:1"))
        await eventually(lambda: len(placed(p)) == 3, "three pods")
        for pod in p.pods():
            await set_phase(p.objects, pod, "Running", ready=True)
        await edited(
            p.objects,
            Kind.DAEMONSET,
            "default",
            "agent",
            lambda d: setattr(d.spec.template.spec.containers[0], "image", "busybox:2"),
        )
        most_missing = 0
        for _ in range(3):
            await eventually(
                lambda: (
                    any(x.status.phase == "Pending" for x in p.pods() if is_active(x))
                    or "busybox:1" not in placed(p).values()
                ),
                "no new pod",
            )
            most_missing = max(most_missing, 3 - len(placed(p)))
            for pod in p.pods():
                if is_active(pod) and pod.status.phase == "Pending":
                    await set_phase(p.objects, pod, "Running", ready=True)
            await settle()
        await eventually(
            lambda: set(placed(p).values()) == {"busybox:2"} and len(placed(p)) == 3,
            "the update did not finish",
        )
        assert most_missing <= 1, "more than maxUnavailable=1 node was without its pod"
        history = revisions.owned_revisions(
            p.informers[Kind.CONTROLLERREVISION].list("default"),
            await p.objects.get(Kind.DAEMONSET, "default", "agent"),
        )
        assert [r.revision for r in history] == [1, 2]
        assert revisions.template_of(history[0]).spec.containers[0].image == "busybox:1"


async def test_on_delete_replaces_only_deleted_pods() -> None:
    async with plane() as p:
        for name in ("n1", "n2"):
            await p.objects.create(factories.node(name=name))
        await create(p, factories.daemon_set(image="busybox:1", strategy="OnDelete"))
        await eventually(lambda: len(placed(p)) == 2, "two pods")
        await edited(
            p.objects,
            Kind.DAEMONSET,
            "default",
            "agent",
            lambda d: setattr(d.spec.template.spec.containers[0], "image", "busybox:2"),
        )
        await settle()
        assert set(placed(p).values()) == {"busybox:1"}, "OnDelete replaced pods by itself"
        victim = next(x for x in p.pods() if x.spec.node_name == "n1")
        await p.objects.delete(Kind.POD, "default", victim.metadata.name)
        await eventually(
            lambda: placed(p) == {"n1": "busybox:2", "n2": "busybox:1"}, "n1 not replaced"
        )

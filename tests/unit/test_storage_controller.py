"""Storage over the memory store: the built-in local-path class, WaitForFirstConsumer (the pod
and its volume on one node), the scheduler honouring a bound volume's node, reclaim Delete
(a helper pod empties the directory, then the volume goes) and Retain, a missing class
(Pending with an event), access modes the provisioner cannot serve, static volumes; pods made
with their node (provisioned on it, or a conflict event), and `--local-path-dir`."""

from __future__ import annotations

import pytest

from controlplane.cache.informer import Informer
from controlplane.controllers.storage import storage_controller
from controlplane.controllers.storage.localpath import HELPER_PREFIX
from controlplane.events import EventRecorder
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import settle
from controlplane.scheduler.claims import StorageView
from controlplane.scheduler.runner import Scheduler
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually
from tests.unit.workload_support import Plane, set_phase

KINDS = (
    Kind.PERSISTENTVOLUMECLAIM,
    Kind.PERSISTENTVOLUME,
    Kind.STORAGECLASS,
    Kind.NODE,
    Kind.POD,
    Kind.EVENT,
)


def plane(node_path: str = "/var/lib/pilothouse/storage") -> Plane:
    def build(objects: ObjectStore, informers: dict[Kind, Informer]) -> list:
        return [
            storage_controller(
                objects,
                claims=informers[Kind.PERSISTENTVOLUMECLAIM],
                volumes=informers[Kind.PERSISTENTVOLUME],
                classes=informers[Kind.STORAGECLASS],
                nodes=informers[Kind.NODE],
                pods=informers[Kind.POD],
                events=EventRecorder(objects, component="persistentvolume-controller"),
                node_path=node_path,
            ),
            Scheduler(
                objects,
                pods=informers[Kind.POD],
                nodes=informers[Kind.NODE],
                storage=StorageView(
                    claims=informers[Kind.PERSISTENTVOLUMECLAIM],
                    volumes_informer=informers[Kind.PERSISTENTVOLUME],
                    classes=informers[Kind.STORAGECLASS],
                    pods=informers[Kind.POD],
                ),
            ),
        ]

    return Plane(KINDS, build)


def user(name: str, claim: str = "data") -> objects_pb2.Pod:
    pod = factories.pod(name=name, uid="")
    volume = pod.spec.volumes.add(name="data")
    volume.persistent_volume_claim.claim_name = claim
    pod.spec.containers[0].volume_mounts.add(name="data", mount_path="/data")
    manifests.set_defaults(pod)
    return pod


async def claim(p: Plane, **kwargs: object) -> None:
    c = factories.claim(**kwargs)
    manifests.set_defaults(c)
    assert manifests.validate(c) == []
    await p.objects.create(c)


def stored_claim(p: Plane, name: str = "data") -> objects_pb2.PersistentVolumeClaim | None:
    return p.informers[Kind.PERSISTENTVOLUMECLAIM].get("default", name)


async def events_of(p: Plane, name: str) -> list[str]:
    listed = await p.objects.list(Kind.EVENT, "default")
    return [f"{e.reason}: {e.message}" for e in listed.items if e.involved_object.name == name]


async def test_wait_for_first_consumer_puts_pod_and_volume_on_one_node() -> None:
    async with plane() as p:
        for name in ("n1", "n2", "n3"):
            await p.objects.create(factories.node(name=name, cpu="2" if name != "n2" else "8"))
        await eventually(
            lambda: p.informers[Kind.STORAGECLASS].get("", "local-path") is not None,
            "no built-in class",
        )
        await claim(p)
        await eventually(
            lambda: (
                (c := stored_claim(p)) is not None and c.spec.storage_class_name == "local-path"
            ),
            "the default class was not assigned",
        )
        await settle()
        assert stored_claim(p).status.phase == "Pending", "bound before any consumer"
        await p.objects.create(user("app"))
        await eventually(
            lambda: (
                (x := p.informers[Kind.POD].get("default", "app")) is not None
                and bool(x.spec.node_name)
            ),
            "the pod was never bound",
        )
        pod = p.informers[Kind.POD].get("default", "app")
        claimed = stored_claim(p)
        assert claimed.status.phase == "Bound"
        volume = p.informers[Kind.PERSISTENTVOLUME].get("", claimed.spec.volume_name)
        assert volume.metadata.annotations["local.path.provisioner/selected-node"] == (
            pod.spec.node_name
        )
        path = volume.spec.host_path.path
        assert path.startswith("/var/lib/pilothouse/storage/pvc-")
        assert pod.metadata.annotations["pilothouse.io/volume.data"] == path
        # A second pod of the claim lands on the same node, whatever the scores say.
        await p.objects.create(user("again"))
        await eventually(
            lambda: (
                (x := p.informers[Kind.POD].get("default", "again")) is not None
                and x.spec.node_name == pod.spec.node_name
            ),
            "the second pod left the volume's node",
        )


async def test_deleting_the_claim_reclaims_the_volume() -> None:
    async with plane() as p:
        await p.objects.create(factories.node(name="n1"))
        await claim(p, storage_class="local-path")
        await p.objects.create(user("app"))
        await eventually(
            lambda: stored_claim(p) is not None and stored_claim(p).spec.volume_name != "", "bound"
        )
        volume_name = stored_claim(p).spec.volume_name
        helper_name = HELPER_PREFIX + volume_name
        await p.objects.delete(Kind.PERSISTENTVOLUMECLAIM, "default", "data")
        await eventually(
            lambda: (
                p.informers[Kind.PERSISTENTVOLUME].get("", volume_name).status.phase == "Released"
            ),
            "the volume was not Released",
        )
        await settle()
        assert p.informers[Kind.POD].get("kube-system", helper_name) is None, (
            "the volume's directory was to be removed while a pod still mounts it"
        )
        await p.objects.delete(Kind.POD, "default", "app")
        await eventually(
            lambda: p.informers[Kind.POD].get("kube-system", helper_name) is not None,
            "no helper pod to empty the directory",
        )
        helper = p.informers[Kind.POD].get("kube-system", helper_name)
        assert helper.spec.node_name == "n1"
        assert helper.spec.containers[0].command[:2] == ["rm", "-rf"]
        volume = p.informers[Kind.PERSISTENTVOLUME].get("", volume_name)
        assert volume.status.phase == "Released"
        await set_phase(p.objects, helper, "Succeeded")
        await eventually(
            lambda: p.informers[Kind.PERSISTENTVOLUME].get("", volume_name) is None,
            "the volume outlived its directory",
        )


async def test_a_missing_storage_class_leaves_the_claim_pending_with_an_event() -> None:
    async with plane() as p:
        await claim(p, storage_class="fast")
        await eventually(
            lambda: stored_claim(p) is not None and stored_claim(p).status.phase == "Pending",
            "not Pending",
        )

        async def said() -> bool:
            return any(
                e == 'ProvisioningFailed: storageclass.storage.k8s.io "fast" not found'
                for e in await events_of(p, "data")
            )

        await eventually(said, "no ProvisioningFailed event naming the class")


async def test_local_path_refuses_read_write_many() -> None:
    async with plane() as p:
        await p.objects.create(factories.node(name="n1"))
        await claim(p, storage_class="local-path", access_modes=("ReadWriteMany",))
        await p.objects.create(user("app"))

        async def said() -> bool:
            return any("ReadWriteMany" in e for e in await events_of(p, "data"))

        await eventually(said, "no event about the access mode")
        assert stored_claim(p).status.phase == "Pending"


async def test_a_static_volume_binds_and_is_retained() -> None:
    async with plane() as p:
        await p.objects.create(factories.node(name="n1"))
        pv = objects_pb2.PersistentVolume()
        pv.metadata.name = "manual"
        pv.spec.capacity["storage"] = "5Gi"
        pv.spec.access_modes.append("ReadWriteOnce")
        pv.spec.host_path.path = "/mnt/data"
        pv.spec.storage_class_name = "manual"
        manifests.set_defaults(pv)
        assert manifests.validate(pv) == []
        await p.objects.create(pv)
        sc = factories.storage_class(name="manual", binding="Immediate", reclaim="Retain")
        sc.provisioner = "kubernetes.io/no-provisioner"
        await p.objects.create(sc)
        await claim(p, storage_class="manual", storage="3Gi")
        await eventually(
            lambda: stored_claim(p) is not None and stored_claim(p).status.phase == "Bound",
            "the claim did not bind the hand-made volume",
        )
        assert stored_claim(p).spec.volume_name == "manual"
        await p.objects.delete(Kind.PERSISTENTVOLUMECLAIM, "default", "data")
        await eventually(
            lambda: p.informers[Kind.PERSISTENTVOLUME].get("", "manual").status.phase == "Released",
            "Retain: the volume should stay, Released",
        )


def bound_to(name: str, node: str) -> objects_pb2.Pod:
    """A pod made with its node (as a DaemonSet's are): the scheduler never sees it."""
    pod = user(name)
    pod.spec.node_name = node
    return pod


async def test_a_pod_made_with_its_node_gets_its_claim_provisioned_there() -> None:
    async with plane() as p:
        for name in ("n1", "n2", "n3"):
            await p.objects.create(factories.node(name=name, cpu="8" if name == "n1" else "2"))
        await claim(p)
        await p.objects.create(bound_to("pinned", "n2"))

        def resolved() -> bool:
            pod = p.informers[Kind.POD].get("default", "pinned")
            return pod is not None and "pilothouse.io/volume.data" in pod.metadata.annotations

        await eventually(resolved, "the pre-bound pod never got its volume's node path")
        claimed = stored_claim(p)
        assert claimed.status.phase == "Bound"
        assert claimed.metadata.annotations["volume.kubernetes.io/selected-node"] == "n2"
        volume = p.informers[Kind.PERSISTENTVOLUME].get("", claimed.spec.volume_name)
        assert volume.metadata.annotations["local.path.provisioner/selected-node"] == "n2", (
            "the volume was made on another node than the pod's"
        )
        pod = p.informers[Kind.POD].get("default", "pinned")
        assert pod.metadata.annotations["pilothouse.io/volume.data"] == volume.spec.host_path.path
        assert pod.spec.node_name == "n2"


async def test_a_pod_made_on_another_node_than_its_volume_waits_with_an_event() -> None:
    async with plane() as p:
        for name in ("n1", "n2"):
            await p.objects.create(factories.node(name=name))
        await claim(p)
        await p.objects.create(bound_to("first", "n1"))
        await eventually(
            lambda: stored_claim(p) is not None and stored_claim(p).status.phase == "Bound",
            "the claim of the first pod was not bound",
        )
        await p.objects.create(bound_to("second", "n2"))

        async def warned() -> bool:
            listed = await p.objects.list(Kind.EVENT, "default")
            return any(
                e.involved_object.name == "second"
                and e.reason == "FailedMount"
                and "volume node affinity conflict" in e.message
                for e in listed.items
            )

        await eventually(warned, "no FailedMount event for the pod on the wrong node")
        second = p.informers[Kind.POD].get("default", "second")
        assert "pilothouse.io/volume.data" not in second.metadata.annotations, (
            "a pod was given a volume of another node"
        )


async def test_the_builtin_class_puts_volumes_under_the_local_path_dir() -> None:
    from controlplane.nodes.settings import SettingsError, split

    settings, rest = split(["--local-path-dir", "/srv/cluster/storage", "--debug"])
    assert (settings.local_path_dir, rest) == ("/srv/cluster/storage", ["--debug"])
    assert split([])[0].local_path_dir == "/var/lib/pilothouse/storage"
    for bad in ("relative/dir", "/", "/srv/../etc"):
        with pytest.raises(SettingsError, match="--local-path-dir"):
            split(["--local-path-dir", bad])
    async with plane(node_path="/srv/cluster/storage") as p:
        await p.objects.create(factories.node(name="n1"))
        await claim(p)
        await p.objects.create(user("app"))
        await eventually(
            lambda: stored_claim(p) is not None and stored_claim(p).status.phase == "Bound",
            "the claim was not bound",
        )
        sc = p.informers[Kind.STORAGECLASS].get("", "local-path")
        assert sc.parameters["nodePath"] == "/srv/cluster/storage"
        volume = p.informers[Kind.PERSISTENTVOLUME].get("", stored_claim(p).spec.volume_name)
        assert volume.spec.host_path.path.startswith("/srv/cluster/storage/pvc-")

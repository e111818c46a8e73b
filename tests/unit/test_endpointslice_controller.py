"""The EndpointSlice controller over the in-memory store: what `get endpointslices` shows for a
Service as its pods come, turn ready or unready, are deleted, lose their node, or name ports
they do not have; at most 100 endpoints per slice; selector-less Services left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from google.protobuf.struct_pb2 import Value

from controlplane.cache.informer import Informer
from controlplane.controllers.endpointslice import endpointslice_controller
from controlplane.controllers.endpointslice.endpoints import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MAX_ENDPOINTS,
    SERVICE_NAME_LABEL,
)
from controlplane.nodes import conditions
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import settle
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually

KINDS = (Kind.SERVICE, Kind.POD, Kind.ENDPOINTSLICE, Kind.NODE)


def service(
    name: str = "web", *, target: int | str = 8080, selector: dict[str, str] | None = None
) -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name = name
    svc.metadata.namespace = "default"
    svc.spec.selector.update({"app": "web"} if selector is None else selector)
    port = svc.spec.ports.add(name="http", port=80)
    port.target_port.CopyFrom(
        Value(string_value=target) if isinstance(target, str) else Value(number_value=target)
    )
    svc.spec.cluster_ip = "10.96.0.10"
    manifests.set_defaults(svc)
    return svc


def pod(
    name: str, ip: str, *, ready: bool = True, node: str = "n1", port_name: str = "http"
) -> objects_pb2.Pod:
    made = factories.pod(name=name, labels={"app": "web"}, node=node)
    made.spec.containers[0].ports.add(name=port_name, container_port=8080)
    made.status.pod_ip = ip
    made.status.phase = "Running"
    made.status.conditions.add(type="Ready", status="True" if ready else "False")
    return made


class Plane:
    def __init__(self) -> None:
        self.objects = ObjectStore(MemoryStore())
        self.informers = {kind: Informer(self.objects, kind) for kind in KINDS}
        self.controller = endpointslice_controller(
            self.objects,
            services=self.informers[Kind.SERVICE],
            pods=self.informers[Kind.POD],
            slices=self.informers[Kind.ENDPOINTSLICE],
            nodes=self.informers[Kind.NODE],
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for runnable in [*self.informers.values(), self.controller]:
            self.tasks.append(asyncio.create_task(runnable.run()))
        await settle()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def slices(self, name: str = "web") -> list[objects_pb2.EndpointSlice]:
        listed = await self.objects.list(Kind.ENDPOINTSLICE, "default")
        return [s for s in listed.items if s.metadata.labels.get(SERVICE_NAME_LABEL) == name]

    async def endpoints(self, name: str = "web") -> dict[str, tuple[bool, bool, bool]]:
        """address -> (ready, serving, terminating), over every slice of the Service."""
        return {
            ep.addresses[0]: (ep.conditions.ready, ep.conditions.serving, ep.conditions.terminating)
            for s in await self.slices(name)
            for ep in s.endpoints
        }

    async def set_status(self, name: str, *, ready: bool) -> None:
        current = await self.objects.get(Kind.POD, "default", name)
        del current.status.conditions[:]
        current.status.conditions.add(type="Ready", status="True" if ready else "False")
        await self.objects.update_status(current)


@pytest.fixture
async def plane() -> Iterator[Plane]:
    made = Plane()
    await made.objects.create(factories.node(name="n1"))
    await made.start()
    yield made
    await made.stop()


async def test_ready_pods_are_ready_endpoints_with_their_resolved_port(plane: Plane) -> None:
    await plane.objects.create(service(target="http"))
    await plane.objects.create(pod("a", "10.244.1.2"))
    await plane.objects.create(pod("b", "10.244.1.3", ready=False))
    want = {"10.244.1.2": (True, True, False), "10.244.1.3": (False, False, False)}
    await eventually(lambda: _equal(plane.endpoints(), want), "the slice lists both pods")
    (slice_,) = await plane.slices()
    assert slice_.address_type == "IPv4"
    assert [(p.name, p.port, p.protocol) for p in slice_.ports] == [("http", 8080, "TCP")]
    assert slice_.metadata.labels[MANAGED_BY_LABEL] == MANAGED_BY
    ep = next(e for e in slice_.endpoints if e.addresses[0] == "10.244.1.2")
    assert (ep.node_name, ep.target_ref.kind, ep.target_ref.name) == ("n1", "Pod", "a")


async def test_readiness_changes_flip_the_endpoint(plane: Plane) -> None:
    await plane.objects.create(service())
    await plane.objects.create(pod("a", "10.244.1.2"))
    await eventually(
        lambda: _equal(plane.endpoints(), {"10.244.1.2": (True, True, False)}), "a ready"
    )
    await plane.set_status("a", ready=False)
    await eventually(
        lambda: _equal(plane.endpoints(), {"10.244.1.2": (False, False, False)}), "a unready"
    )


async def test_a_deleting_pod_is_terminating_then_gone(plane: Plane) -> None:
    await plane.objects.create(service())
    await plane.objects.create(pod("a", "10.244.1.2"))
    await eventually(lambda: _equal(plane.endpoints(), {"10.244.1.2": (True, True, False)}), "a")
    current = await plane.objects.get(Kind.POD, "default", "a")
    current.metadata.deletion_timestamp.FromSeconds(1_700_000_000)
    await plane.objects.update(current)
    await eventually(
        lambda: _equal(plane.endpoints(), {"10.244.1.2": (False, True, True)}),
        "a deleting pod shows as serving and terminating, not ready",
    )
    await plane.objects.delete(Kind.POD, "default", "a")

    async def placeholder() -> bool | list[int]:
        sizes = [len(s.endpoints) for s in await plane.slices()]
        return True if sizes == [0] else sizes

    await eventually(placeholder, "no endpoint left, and one empty slice kept (Kubernetes')")


async def test_pods_on_a_lost_node_stop_serving(plane: Plane) -> None:
    await plane.objects.create(service())
    await plane.objects.create(pod("a", "10.244.1.2"))
    await eventually(lambda: _equal(plane.endpoints(), {"10.244.1.2": (True, True, False)}), "a")
    node = await plane.objects.get(Kind.NODE, "", "n1")
    conditions.set_ready(
        node,
        status=conditions.ReadyStatus.UNKNOWN,
        reason=conditions.ReadyReason.STATUS_UNKNOWN,
        message="no heartbeat",
        now=1_700_000_000,
    )
    await plane.objects.update_status(node)
    await eventually(
        lambda: _equal(plane.endpoints(), {"10.244.1.2": (False, False, False)}),
        "a pod on a lost node is not ready",
    )


async def test_a_port_name_the_pod_lacks_leaves_it_out(plane: Plane) -> None:
    await plane.objects.create(service(target="http"))
    await plane.objects.create(pod("a", "10.244.1.2"))
    await plane.objects.create(pod("b", "10.244.1.3", port_name="web"))

    async def grouped() -> bool | list[list[tuple[str, int]]]:
        ports = sorted(sorted((p.name, p.port) for p in s.ports) for s in await plane.slices())
        return True if ports == [[], [("http", 8080)]] else ports

    await eventually(grouped, "pod b (no port named http) sits in a slice without that port")


async def test_slices_hold_at_most_100_endpoints(plane: Plane) -> None:
    await plane.objects.create(service())
    for i in range(MAX_ENDPOINTS + 30):
        await plane.objects.create(pod(f"p{i:03}", f"10.244.{1 + i // 200}.{2 + i % 200}"))

    async def spread() -> bool | list[int]:
        sizes = sorted(len(s.endpoints) for s in await plane.slices())
        return True if sum(sizes) == MAX_ENDPOINTS + 30 and max(sizes) <= MAX_ENDPOINTS else sizes

    await eventually(spread, "130 endpoints in slices of at most 100")
    assert len(await plane.slices()) == 2


async def test_selectorless_services_and_hand_made_slices_are_left_alone(plane: Plane) -> None:
    await plane.objects.create(service("ext", selector={}))
    manual = objects_pb2.EndpointSlice(address_type="IPv4")
    manual.metadata.name = "ext-1"
    manual.metadata.namespace = "default"
    manual.metadata.labels[SERVICE_NAME_LABEL] = "ext"
    manual.endpoints.add(addresses=["192.0.2.10"])
    await plane.objects.create(manual)
    await plane.objects.create(pod("a", "10.244.1.2"))
    await settle()
    await asyncio.sleep(0.05)
    (kept,) = await plane.slices("ext")
    assert kept.metadata.name == "ext-1" and kept.endpoints[0].addresses == ["192.0.2.10"]


async def test_deleting_the_service_deletes_its_slices(plane: Plane) -> None:
    await plane.objects.create(service())
    await plane.objects.create(pod("a", "10.244.1.2"))
    await eventually(lambda: _equal(plane.endpoints(), {"10.244.1.2": (True, True, False)}), "a")
    await plane.objects.delete(Kind.SERVICE, "default", "web")

    async def gone() -> bool | int:
        return True if not await plane.slices() else len(await plane.slices())

    await eventually(gone, "the Service's slices go with it")


async def _equal(got: object, want: object) -> bool | object:
    value = await got  # type: ignore[misc]
    return True if value == want else value

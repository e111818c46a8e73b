"""ClusterIP and NodePort allocation over the in-memory store, as an Apply of a Service sees it:
addresses in range and unique (also under concurrent applies and across a restart), kept when
a manifest omits them, requested ones refused with their field path when taken or out of
range, and given back on delete, on a failed write, and by the repair of a crash's leftovers.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from controlplane.objects import ObjectStore
from controlplane.services.addresses import ServiceAddresses
from controlplane.services.allocator import Allocator, ClusterIPs
from controlplane.services.repair import AllocationRepair
from controlplane.services.settings import ServiceSettings, SettingsError, split
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.manifests.problems import ManifestError
from pilothouse.v1 import objects_pb2


def service(
    name: str = "web",
    *,
    type: str = "ClusterIP",
    cluster_ip: str = "",
    ports: tuple[tuple[int, int], ...] = ((80, 0),),
) -> objects_pb2.Service:
    """A Service as a manifest makes it (defaults applied); `ports` is (port, nodePort)."""
    svc = objects_pb2.Service()
    svc.metadata.name = name
    svc.spec.type = type
    svc.spec.cluster_ip = cluster_ip
    svc.spec.selector["app"] = name
    for i, (port, node_port) in enumerate(ports):
        svc.spec.ports.add(name=f"p{i}" if len(ports) > 1 else "", port=port, node_port=node_port)
    manifests.set_defaults(svc)
    assert manifests.validate(svc) == [], manifests.validate(svc)
    return svc


def fields(error: ManifestError) -> dict[str, str]:
    return {p.field: p.message for p in error.problems}


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore(MemoryStore())


@pytest.fixture
def addresses(objects: ObjectStore) -> ServiceAddresses:
    return ServiceAddresses(objects)


async def test_cluster_ips_come_from_the_range_and_differ(addresses: ServiceAddresses) -> None:
    a = (await addresses.apply(service("a"))).object
    b = (await addresses.apply(service("b"))).object
    network = ipaddress.ip_network("10.96.0.0/16")
    for svc in (a, b):
        assert ipaddress.ip_address(svc.spec.cluster_ip) in network
        assert list(svc.spec.cluster_ips) == [svc.spec.cluster_ip]
    assert a.spec.cluster_ip != b.spec.cluster_ip, "two Services got one ClusterIP"


async def test_node_ports_are_allocated_for_node_port_services_only(
    addresses: ServiceAddresses,
) -> None:
    np = (await addresses.apply(service("np", type="NodePort", ports=((80, 0), (81, 0))))).object
    assert all(30000 <= p.node_port <= 32767 for p in np.spec.ports), np.spec.ports
    assert np.spec.ports[0].node_port != np.spec.ports[1].node_port
    ci = (await addresses.apply(service("ci"))).object
    assert [p.node_port for p in ci.spec.ports] == [0]
    headless = (await addresses.apply(service("h", cluster_ip="None"))).object
    assert headless.spec.cluster_ip == "None"


async def test_reapply_without_them_keeps_cluster_ip_and_node_ports(
    addresses: ServiceAddresses,
) -> None:
    first = (await addresses.apply(service("web", type="NodePort"))).object
    again = await addresses.apply(service("web", type="NodePort"))
    assert again.outcome.value == "unchanged", "re-applying the same manifest changed it"
    assert again.object.spec.cluster_ip == first.spec.cluster_ip
    assert again.object.spec.ports[0].node_port == first.spec.ports[0].node_port


async def test_requested_ip_outside_the_range_is_refused_with_its_path(
    addresses: ServiceAddresses, objects: ObjectStore
) -> None:
    with pytest.raises(ManifestError) as refused:
        await addresses.apply(service("web", cluster_ip="192.168.1.1"))
    assert fields(refused.value) == {
        "spec.clusterIP": 'Invalid value: "192.168.1.1": provided IP is not in the valid '
        "range. The range of valid IPs is 10.96.0.0/16"
    }
    assert (await objects.list(Kind.SERVICE)).items == [], "a refused Service was stored"


async def test_taken_ip_and_taken_node_port_are_refused(addresses: ServiceAddresses) -> None:
    await addresses.apply(
        service("a", type="NodePort", cluster_ip="10.96.0.10", ports=((80, 30080),))
    )
    with pytest.raises(ManifestError) as refused:
        await addresses.apply(
            service("b", type="NodePort", cluster_ip="10.96.0.10", ports=((80, 30080),))
        )
    assert fields(refused.value) == {
        "spec.clusterIP": 'Invalid value: "10.96.0.10": provided IP is already allocated',
        "spec.ports[0].nodePort": "Invalid value: 30080: provided port is already allocated",
    }
    # Nothing of the refused apply stays reserved: b gets other values at once.
    b = (await addresses.apply(service("b", type="NodePort"))).object
    assert b.spec.cluster_ip != "10.96.0.10" and b.spec.ports[0].node_port != 30080


async def test_node_port_out_of_range_is_refused(addresses: ServiceAddresses) -> None:
    with pytest.raises(ManifestError) as refused:
        await addresses.apply(service("a", type="NodePort", ports=((80, 8080),)))
    assert fields(refused.value) == {
        "spec.ports[0].nodePort": "Invalid value: 8080: provided port is not in the valid "
        "range. The range of valid ports is 30000-32767"
    }


async def test_cluster_ip_cannot_change(addresses: ServiceAddresses) -> None:
    first = (await addresses.apply(service("a"))).object
    other = "10.96.7.7" if first.spec.cluster_ip != "10.96.7.7" else "10.96.7.8"
    with pytest.raises(ManifestError) as refused:
        await addresses.apply(service("a", cluster_ip=other))
    assert "field is immutable" in fields(refused.value)["spec.clusterIP"]


async def test_delete_gives_everything_back(
    addresses: ServiceAddresses, objects: ObjectStore
) -> None:
    await addresses.apply(
        service("a", type="NodePort", cluster_ip="10.96.0.10", ports=((80, 30080),))
    )
    deleted = await objects.delete(Kind.SERVICE, "default", "a")
    await addresses.released(deleted)
    b = await addresses.apply(
        service("b", type="NodePort", cluster_ip="10.96.0.10", ports=((80, 30080),))
    )
    assert b.object.spec.cluster_ip == "10.96.0.10"


async def test_turning_cluster_ip_releases_node_ports(addresses: ServiceAddresses) -> None:
    await addresses.apply(service("a", type="NodePort", ports=((80, 30080),)))
    await addresses.apply(service("a"))
    assert await addresses.ports.owner("30080") is None, "a ClusterIP Service kept its nodePort"


async def test_allocations_are_exact_across_a_restart(objects: ObjectStore) -> None:
    before = (await ServiceAddresses(objects).apply(service("a", cluster_ip="10.96.0.10"))).object
    restarted = ServiceAddresses(objects)  # a new control plane process, the same etcd
    with pytest.raises(ManifestError, match="already allocated"):
        await restarted.apply(service("b", cluster_ip=before.spec.cluster_ip))


async def test_concurrent_applies_never_share_an_address(objects: ObjectStore) -> None:
    # 14 usable addresses, 14 Services applied at once by two "control planes".
    settings = ServiceSettings(service_cidr="10.96.0.0/28")
    planes = [ServiceAddresses(objects, settings), ServiceAddresses(objects, settings)]
    applied = await asyncio.gather(*(planes[i % 2].apply(service(f"s{i}")) for i in range(14)))
    ips = [a.object.spec.cluster_ip for a in applied]
    assert len(set(ips)) == 14, f"two Services share a ClusterIP: {sorted(ips)}"
    with pytest.raises(ManifestError, match=r"every value of 10\.96\.0\.0/28 is allocated"):
        await planes[0].apply(service("one-too-many"))


async def test_a_failed_write_releases_what_it_reserved(
    addresses: ServiceAddresses, objects: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("etcd went away")

    monkeypatch.setattr(objects, "apply", broken)
    with pytest.raises(RuntimeError):
        await addresses.apply(service("a", cluster_ip="10.96.0.10"))
    assert await addresses.ips.held() == [], "a failed write left its ClusterIP reserved"


async def test_repair_frees_leaks_after_grace_and_retakes_missing_keys(
    objects: ObjectStore,
) -> None:
    now = [1000.0]
    addresses = ServiceAddresses(objects)
    addresses.ips = Allocator(objects.store, ClusterIPs(addresses.settings.network),
                              clock=lambda: now[0])  # fmt: skip
    kept = (await addresses.apply(service("kept", cluster_ip="10.96.0.20"))).object
    # A crash between reserve and write: a key with no Service.
    assert await addresses.ips.reserve("10.96.0.30", "default/ghost")
    # A Service whose key is gone (restored from a backup).
    await addresses.ips.release("10.96.0.20", "default/kept")
    repair = AllocationRepair(objects, addresses, grace=60, clock=lambda: now[0])
    freed, retaken = await repair.repair()
    assert (freed, retaken) == (0, 1), "the repair freed a fresh key or missed a lost one"
    assert await addresses.ips.owner(kept.spec.cluster_ip) == "default/kept"
    now[0] += 61
    assert await repair.repair() == (1, 0)
    assert await addresses.ips.owner("10.96.0.30") is None, "the leaked key survived repair"


def test_settings_refuse_overlapping_and_malformed_ranges() -> None:
    with pytest.raises(SettingsError, match="overlaps the pods' --cluster-cidr"):
        split(["--service-cluster-ip-range", "10.244.0.0/16"], cluster_cidr="10.244.0.0/16")
    with pytest.raises(SettingsError, match="expected LOW-HIGH"):
        split(["--service-node-port-range", "32767-30000"])
    settings, rest = split(["--service-cluster-ip-range", "10.100.0.0/24", "--debug"])
    assert settings.service_cidr == "10.100.0.0/24" and rest == ["--debug"]

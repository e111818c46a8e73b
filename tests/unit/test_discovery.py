"""What a node programs from a push: pushed Services and EndpointSlices as the data plane's
state and the DNS records (ready endpoints only, named target ports per pod, node ports,
affinity, headless, this node's leaving pods left out), and each pod's resolv.conf and hosts
files with their bind mounts.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf.struct_pb2 import Value

from nodeagent.discovery.convert import Pushed, convert
from nodeagent.discovery.podfiles import PodFiles
from nodeagent.dns.records import RType, Zone
from nodeagent.services.model import Affinity, Endpoint
from pilothouse import manifests
from pilothouse.v1 import objects_pb2
from tests import factories
from tests.unit.waiting import eventually


def service(
    name: str = "web",
    *,
    cluster_ip: str = "10.96.0.10",
    type: str = "ClusterIP",
    node_port: int = 0,
    affinity: str = "",
) -> objects_pb2.Service:
    svc = objects_pb2.Service()
    svc.metadata.name, svc.metadata.namespace = name, "default"
    svc.spec.cluster_ip, svc.spec.type = cluster_ip, type
    if affinity:
        svc.spec.session_affinity = affinity
    port = svc.spec.ports.add(name="http", port=80, node_port=node_port)
    port.target_port.CopyFrom(Value(string_value="http"))
    manifests.set_defaults(svc)
    return svc


def slice_(
    service: str, *endpoints: tuple[str, bool | None], port: int = 8080, name: str = "http"
) -> objects_pb2.EndpointSlice:
    made = objects_pb2.EndpointSlice(address_type="IPv4")
    made.metadata.name, made.metadata.namespace = f"{service}-x", "default"
    made.metadata.labels["kubernetes.io/service-name"] = service
    made.ports.add(name=name, protocol="TCP", port=port)
    for address, ready in endpoints:
        ep = made.endpoints.add(addresses=[address])
        if ready is not None:
            ep.conditions.ready = ready
    return made


def converted(*objects: object, exclude: frozenset[str] = frozenset()) -> object:
    pushed = Pushed(
        services=tuple(o for o in objects if isinstance(o, objects_pb2.Service)),
        slices=tuple(o for o in objects if isinstance(o, objects_pb2.EndpointSlice)),
        service_cidr="10.96.0.0/16",
        cluster_cidr="10.244.0.0/16",
    )
    return convert(pushed, node_ips=("172.30.0.11",), pod_cidrs=("10.244.1.0/24",), exclude=exclude)


def test_ready_endpoints_with_their_ports_and_nothing_else() -> None:
    out = converted(
        service(),
        slice_("web", ("10.244.1.2", True), ("10.244.1.3", False), ("10.244.2.2", None)),
    )
    (svc,) = out.state.services
    assert svc.ports[0].endpoints == (Endpoint("10.244.1.2", 8080), Endpoint("10.244.2.2", 8080))
    assert out.state.node.service_cidr == "10.96.0.0/16"


def test_a_leaving_pod_is_left_out_and_a_slice_without_the_port_serves_nothing() -> None:
    out = converted(
        service(),
        slice_("web", ("10.244.1.2", True), ("10.244.1.3", True)),
        exclude=frozenset({"10.244.1.3"}),
    )
    assert out.state.services[0].ports[0].endpoints == (Endpoint("10.244.1.2", 8080),)
    other = converted(service(), slice_("web", ("10.244.1.2", True), name="web"))
    assert other.state.services[0].ports[0].endpoints == ()


def test_node_ports_and_affinity() -> None:
    out = converted(
        service(type="NodePort", node_port=30080, affinity="ClientIP"),
        slice_("web", ("10.244.1.2", True)),
    )
    (svc,) = out.state.services
    assert svc.ports[0].node_port == 30080
    assert (svc.affinity, svc.affinity_timeout_s) == (Affinity.CLIENT_IP, 10800)


def test_headless_services_are_dns_only_and_a_clash_is_reported() -> None:
    out = converted(
        service("db", cluster_ip="None"),
        slice_("db", ("10.244.1.7", True), ("10.244.1.8", False)),
        service("a", cluster_ip="10.96.0.10"),
        service("b", cluster_ip="10.96.0.10"),
    )
    assert out.state.services == (), "two Services with one ClusterIP were programmed"
    assert any("is used by both" in p for p in out.problems), out.problems
    zone = Zone.build(out.records)
    db = zone.lookup("db.default.svc.cluster.local", RType.A)
    assert [r.value for r in db.records] == ["10.244.1.7"]
    web = zone.lookup("a.default.svc.cluster.local", RType.A)
    assert [r.value for r in web.records] == ["10.96.0.10"]


def test_pod_files_are_written_and_mounted(tmp_path: Path) -> None:
    node_resolv = tmp_path / "node-resolv.conf"
    node_resolv.write_text("nameserver 192.0.2.53\nsearch example.org\n")
    pod = factories.pod(name="web-1", namespace="shop")
    pod.spec.dns_policy = "ClusterFirst"
    pod.spec.host_aliases.add(ip="10.1.2.3", hostnames=["db.local"])
    files = PodFiles(sync=None, resolv_conf=node_resolv)
    mounts = files(pod, "10.244.1.5", tmp_path / "pod")
    assert [(m.type, m.target) for m in mounts] == [
        ("bind", "/etc/resolv.conf"),
        ("bind", "/etc/hosts"),
    ]
    resolv = Path(mounts[0].source).read_text()
    # No cluster DNS on this node: ClusterFirst falls back to the node's resolvers.
    assert "nameserver 192.0.2.53" in resolv and "search example.org" in resolv
    hosts = Path(mounts[1].source).read_text()
    assert "10.244.1.5\tweb-1" in hosts and "10.1.2.3\tdb.local" in hosts


async def test_service_sync_answers_dns_from_each_push() -> None:
    import asyncio

    import dns.asyncquery
    import dns.message

    from nodeagent.discovery.sync import ServiceSync

    sync = ServiceSync(plane=None, node_ips=(), pod_cidr=lambda: "127.0.0.0/8", dns_port=0,
                       resolv_conf=None)  # fmt: skip
    task = asyncio.create_task(sync.run())
    try:
        await eventually(
            lambda: sync.dns is not None,
            "the DNS server did not start on the pod CIDR's gateway",
            within=30,
        )
        assert sync.dns is not None
        assert sync.cluster_dns == "127.0.0.1"
        outcome = await sync.push(Pushed(services=(service(),)))
        assert outcome.programmed, "a node without a data plane routes by nothing: programmed"
        query = dns.message.make_query("web.default.svc.cluster.local", "A")
        answer = await dns.asyncquery.udp(query, "127.0.0.1", port=sync.dns.port, timeout=2)
        assert [r.to_text() for r in answer.answer[0]] == ["10.96.0.10"]
        again = await sync.push(Pushed(services=(service(),)))
        assert again.programmed, "the same push again"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

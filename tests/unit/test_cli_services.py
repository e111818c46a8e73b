"""`get svc`, `get endpointslices` and `describe svc` as kubectl prints them."""

from __future__ import annotations

from datetime import UTC, datetime

from pilothouse.cli import tables
from pilothouse.cli.describe.services import endpoints_line
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def web(type: str = "NodePort") -> o.Service:
    svc = o.Service()
    svc.metadata.name = "web"
    svc.metadata.creation_timestamp.FromSeconds(int(NOW.timestamp()) - 90)
    svc.spec.type, svc.spec.cluster_ip = type, "10.96.0.10"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80, protocol="TCP", node_port=30080)
    svc.spec.ports.add(name="dns", port=53, protocol="UDP")
    return svc


def test_get_svc_columns_and_wide_selector() -> None:
    table = tables.table(Kind.SERVICE, [web(), web("LoadBalancer")], now=NOW, wide=True)
    assert table.headers == (
        "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"
    )  # fmt: skip
    assert table.rows[0] == (
        "web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "90s", "app=web"
    )  # fmt: skip
    assert table.rows[1][3] == "<pending>", "a LoadBalancer without a balancer is pending"


def test_get_endpointslices_shows_three_addresses_and_how_many_more() -> None:
    eps = o.EndpointSlice(address_type="IPv4")
    eps.metadata.name = "web-abcde"
    eps.ports.add(name="http", port=8080)
    for i in range(5):
        eps.endpoints.add(addresses=[f"10.244.1.{i + 2}"])
    (row,) = tables.table(Kind.ENDPOINTSLICE, [eps], now=NOW).rows
    assert row[:4] == (
        "web-abcde", "IPv4", "8080", "10.244.1.2,10.244.1.3,10.244.1.4 + 2 more..."
    )  # fmt: skip


def test_describe_lists_ready_endpoints_per_port() -> None:
    eps = o.EndpointSlice(address_type="IPv4")
    eps.ports.add(name="http", port=8080)
    eps.endpoints.add(addresses=["10.244.1.2"]).conditions.ready = True
    eps.endpoints.add(addresses=["10.244.1.3"]).conditions.ready = False
    eps.endpoints.add(addresses=["10.244.2.2"])  # ready unset: ready
    http = web().spec.ports[0]
    assert endpoints_line([eps], http) == "10.244.1.2:8080,10.244.2.2:8080"
    assert endpoints_line([eps], web().spec.ports[1]) == "", "the dns port has no endpoints"

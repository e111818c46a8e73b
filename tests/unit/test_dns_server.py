"""The node DNS server over real UDP and TCP on loopback, queried with dnspython as a client.

The "node's resolvers" are a second DnsServer on another loopback port serving an
`example.org` zone, named in a resolv.conf of the test's own (with `upstream_port`, since a
resolv.conf cannot name a port).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from nodeagent.dns.records import (
    ClusterRecords,
    DnsEndpoint,
    DnsPort,
    DnsService,
    PodRecords,
    RType,
    Zone,
)
from nodeagent.dns.server import DnsServer
from nodeagent.dns.upstream import Upstream

HOST = "127.0.0.1"
WEB = DnsService(
    "default",
    "web",
    "10.96.0.10",
    (DnsPort("http", 80), DnsPort("", 8443), DnsPort("dns", 53, "udp")),
)
DB = DnsService(
    "default",
    "db",
    "",
    (DnsPort("pg", 5432),),
    (
        DnsEndpoint("10.244.1.5", "db-0", (DnsPort("pg", 15432),)),
        DnsEndpoint("10.244.2.6"),
    ),
)
RECORDS = ClusterRecords(services=(WEB, DB))


@pytest.fixture
async def upstream() -> AsyncIterator[DnsServer]:
    records = ClusterRecords(services=(DnsService("ns", "www", "192.0.2.7"),), domain="example.org")
    server = DnsServer(host=HOST, port=0, resolv_conf=None, records=records)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def server(tmp_path: Path, upstream: DnsServer) -> AsyncIterator[DnsServer]:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"# the node's\nsearch corp.example\nnameserver {HOST}\n")
    dns_server = DnsServer(
        host=HOST,
        port=0,
        resolv_conf=resolv,
        records=RECORDS,
        upstream_port=upstream.port,
        upstream_timeout_s=0.5,
    )
    await dns_server.start()
    try:
        yield dns_server
    finally:
        await dns_server.close()


async def ask(
    server: DnsServer, name: str, rtype: str = "A", *, tcp: bool = False, edns: bool = True
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, use_edns=0 if edns else False)
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, timeout=3, port=server.port)
    return await dns.asyncquery.udp(query, HOST, timeout=3, port=server.port)


def values(response: dns.message.Message, rtype: str = "A") -> list[str]:
    wanted = dns.rdatatype.from_text(rtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_service_name_is_its_cluster_ip(server: DnsServer, tcp: bool) -> None:
    response = await ask(server, "web.default.svc.cluster.local.", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert values(response) == ["10.96.0.10"]
    assert response.answer[0].ttl == 5
    assert response.flags & dns.flags.AA, "cluster answers are authoritative"


async def test_names_are_case_insensitive_and_answered_as_asked(server: DnsServer) -> None:
    response = await ask(server, "Web.DEFAULT.svc.Cluster.Local.")
    assert values(response) == ["10.96.0.10"]
    assert response.answer[0].name.to_text() == "Web.DEFAULT.svc.Cluster.Local."


async def test_a_headless_service_is_its_ready_pods(server: DnsServer) -> None:
    assert values(await ask(server, "db.default.svc.cluster.local.")) == [
        "10.244.1.5",
        "10.244.2.6",
    ]
    assert values(await ask(server, "db-0.db.default.svc.cluster.local.")) == ["10.244.1.5"]
    assert values(await ask(server, "10-244-2-6.db.default.svc.cluster.local.")) == ["10.244.2.6"]


async def test_srv_records_for_named_ports(server: DnsServer) -> None:
    response = await ask(server, "_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert values(response, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
    glue = [rd.to_text() for rrset in response.additional for rd in rrset]
    assert glue == ["10.96.0.10"], "the SRV target's address should come along"
    udp = await ask(server, "_dns._udp.web.default.svc.cluster.local.", "SRV")
    assert values(udp, "SRV") == ["0 100 53 web.default.svc.cluster.local."]
    headless = await ask(server, "_pg._tcp.db.default.svc.cluster.local.", "SRV")
    assert values(headless, "SRV") == [
        "0 50 15432 db-0.db.default.svc.cluster.local.",
        "0 50 5432 10-244-2-6.db.default.svc.cluster.local.",
    ]
    unnamed = await ask(server, "_8443._tcp.web.default.svc.cluster.local.", "SRV")
    assert unnamed.rcode() == dns.rcode.NXDOMAIN, "only named ports have SRV records"


async def test_pod_names_spell_their_address(server: DnsServer) -> None:
    assert values(await ask(server, "10-244-1-5.default.pod.cluster.local.")) == ["10.244.1.5"]
    for bad in ("10-244-1-500.default.pod.cluster.local.", "x.default.pod.cluster.local."):
        assert (await ask(server, bad)).rcode() == dns.rcode.NXDOMAIN


def test_verified_pod_records_answer_only_known_pods() -> None:
    zone = Zone.build(
        ClusterRecords(pod_records=PodRecords.VERIFIED, pods=frozenset({("default", "10.244.1.5")}))
    )
    assert zone.lookup("10-244-1-5.default.pod.cluster.local", RType.A).records
    assert zone.lookup("10-244-1-5.other.pod.cluster.local", RType.A).outcome.value == "nxdomain"


async def test_unknown_cluster_names_are_nxdomain_with_the_zone_soa(server: DnsServer) -> None:
    for name in (
        "nope.default.svc.cluster.local.",
        "web.default.svc.cluster.local.default.svc.cluster.local.",  # a search-path try
        "web.other.svc.cluster.local.",
    ):
        response = await ask(server, name)
        assert response.rcode() == dns.rcode.NXDOMAIN, name
        soa = response.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cluster.local."
        assert soa[0].minimum == 5, "negative answers are cached for the same 5 s"


async def test_existing_names_without_the_type_are_nodata(server: DnsServer) -> None:
    for name, rtype in (
        ("web.default.svc.cluster.local.", "AAAA"),
        ("default.svc.cluster.local.", "A"),
        ("svc.cluster.local.", "A"),
        ("web.default.svc.cluster.local.", "TXT"),
    ):
        response = await ask(server, name, rtype)
        assert response.rcode() == dns.rcode.NOERROR, f"{name} {rtype}"
        assert response.answer == [], f"{name} {rtype}"
        assert response.authority[0].rdtype == dns.rdatatype.SOA


async def test_update_swaps_the_zone(server: DnsServer) -> None:
    api = DnsService("prod", "api", "10.96.3.4")
    server.update(ClusterRecords(services=(api,)))
    assert values(await ask(server, "api.prod.svc.cluster.local.")) == ["10.96.3.4"]
    gone = await ask(server, "web.default.svc.cluster.local.")
    assert gone.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_other_names_are_forwarded_to_the_node_resolvers(
    server: DnsServer, tcp: bool
) -> None:
    response = await ask(server, "www.ns.svc.example.org.", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert values(response) == ["192.0.2.7"]
    missing = await ask(server, "nope.ns.svc.example.org.", tcp=tcp)
    assert missing.rcode() == dns.rcode.NXDOMAIN, "an upstream NXDOMAIN is passed on"


async def test_servfail_without_resolvers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search corp.example\n")
    server = DnsServer(host=HOST, port=0, resolv_conf=resolv, records=RECORDS)
    await server.start()
    try:
        assert (await ask(server, "example.com.")).rcode() == dns.rcode.SERVFAIL
        resolv.unlink()
        assert (await ask(server, "example.com.")).rcode() == dns.rcode.SERVFAIL
        assert values(await ask(server, "web.default.svc.cluster.local.")) == ["10.96.0.10"]
    finally:
        await server.close()


async def test_servfail_when_the_resolvers_are_unreachable(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes queries, never answers
    silent.bind((HOST, 0))
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {HOST}\n")
    server = DnsServer(
        host=HOST,
        port=0,
        resolv_conf=resolv,
        upstream_port=silent.getsockname()[1],
        upstream_timeout_s=0.3,
    )
    await server.start()
    try:
        started = time.perf_counter()
        assert (await ask(server, "example.com.")).rcode() == dns.rcode.SERVFAIL
        assert time.perf_counter() - started < 2.5, "SERVFAIL must come within the timeout"
        silent.close()  # now nothing listens: refused at once
        assert (await ask(server, "example.com.")).rcode() == dns.rcode.SERVFAIL
    finally:
        await server.close()
        silent.close()


def test_a_resolver_that_is_this_server_is_skipped(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.244.1.1\nnameserver 192.0.2.53\n")
    upstream = Upstream(resolv, exclude=frozenset({("10.244.1.1", 53)}))
    assert upstream.resolvers() == ("192.0.2.53",)


async def test_large_answers_are_truncated_over_udp_and_whole_over_tcp(server: DnsServer) -> None:
    many = tuple(DnsEndpoint(f"10.244.3.{i}") for i in range(1, 101))
    server.update(ClusterRecords(services=(DnsService("default", "big", "", (), many),)))
    udp = await ask(server, "big.default.svc.cluster.local.", edns=False)
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = await ask(server, "big.default.svc.cluster.local.", tcp=True)
    assert len(values(tcp)) == 100


async def test_one_tcp_connection_serves_several_queries(server: DnsServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        for name in ("web.default.svc.cluster.local.", "db.default.svc.cluster.local."):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            response = dns.message.from_wire(await reader.readexactly(size))
            assert response.rcode() == dns.rcode.NOERROR and values(response), name
    finally:
        writer.close()


async def test_malformed_queries_get_formerr_or_nothing(server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_sendto(
            sock, b"\x12\x34" + b"\x01\x00\x00\x05" + b"\xff" * 10, (HOST, server.port)
        )
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 512), 3))
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    finally:
        sock.close()
    # The server is still answering afterwards.
    assert values(await ask(server, "web.default.svc.cluster.local.")) == ["10.96.0.10"]

"""The Services table as rendered from plain state: its structure, not its exact text.

Each test states a property a node's traffic depends on (one O(1) lookup, DNAT from the right
hooks, masquerade of the right traffic, reject when there is no endpoint) and checks it on the
`nftables.Table` the renderer returns. Applying it to a kernel is tested in
tests/integration/test_services_dataplane.py.
"""

from __future__ import annotations

import re

import pytest

from nodeagent.services.model import (
    Affinity,
    Endpoint,
    InvalidState,
    NodeFacts,
    Protocol,
    ProxyState,
    Service,
    ServicePort,
)
from nodeagent.services.nftables import Table
from nodeagent.services.render import chain_name, render

NODE = NodeFacts(
    node_ips=("172.30.0.11",),
    pod_cidrs=("10.244.1.0/24",),
    cluster_cidr="10.244.0.0/16",
    service_cidr="10.96.0.0/16",
)
A = Endpoint("10.244.1.2", 8080)
B = Endpoint("10.244.2.3", 8080)


def web(*endpoints: Endpoint, node_port: int = 0, **kwargs: object) -> Service:
    port = ServicePort(80, name="http", node_port=node_port, endpoints=endpoints)
    return Service("default", "web", "10.96.0.10", (port,), **kwargs)  # type: ignore[arg-type]


def table(*services: Service, node: NodeFacts = NODE) -> Table:
    return render(ProxyState(node=node, services=services))


def targets(rule: str) -> list[str]:
    return re.findall(r"(?:goto|jump) ([\w./-]+)", rule)


def test_one_lookup_from_prerouting_and_output_dnats_every_cluster_ip() -> None:
    t = table(web(A, B))
    assert t.family == "ip" and t.name == "pilothouse"
    assert "ip daddr . meta l4proto . th dport vmap @service-ips" in t.chain("services").rules
    for base, hook in (("nat-prerouting", "prerouting"), ("nat-output", "output")):
        chain = t.chain(base)
        assert f"type nat hook {hook}" in chain.hook
        assert chain.rules == ("jump services",)
    svc = chain_name("svc", web(), web().ports[0])
    assert t.set("service-ips").elements == (f"10.96.0.10 . tcp . 80 : goto {svc}",)


def test_endpoints_are_picked_at_random_and_each_is_a_dnat() -> None:
    t = table(web(A, B))
    port = web().ports[0]
    rules = t.chain(chain_name("svc", web(), port)).rules
    pick = [r for r in rules if r.startswith("numgen random mod 2 vmap")]
    assert len(pick) == 1, rules
    assert targets(pick[0]) == [chain_name("ep", web(), port, e) for e in (A, B)]
    for endpoint in (A, B):
        ep = t.chain(chain_name("ep", web(), port, endpoint)).rules
        assert ep[-1] == f"meta l4proto tcp dnat to {endpoint.ip}:{endpoint.port}"


def test_masquerade_marks_outside_sources_hairpin_and_nodeports() -> None:
    t = table(web(A, node_port=30080))
    port = web().ports[0]
    svc = t.chain(chain_name("svc", web(), port)).rules
    assert (
        "ip daddr 10.96.0.10 tcp dport 80 ip saddr != @cluster-cidrs jump mark-for-masquerade"
        in svc
    )
    assert t.set("cluster-cidrs").elements == ("10.244.0.0/16",)
    ep = t.chain(chain_name("ep", web(), port, A)).rules
    assert ep[0] == "ip saddr 10.244.1.2 jump mark-for-masquerade", "hairpin is not masqueraded"
    ext = t.chain(chain_name("ext", web(), port)).rules
    assert ext == ("jump mark-for-masquerade", f"goto {chain_name('svc', web(), port)}")
    post = t.chain("nat-postrouting")
    assert "hook postrouting" in post.hook and post.rules == ("jump masquerading",)
    assert t.chain("masquerading").rules[-1] == "masquerade fully-random"
    assert t.chain("masquerading").rules[0] == "meta mark & 0x4000 == 0 return"


def test_without_a_cluster_cidr_the_node_pod_cidrs_count_as_the_pod_network() -> None:
    node = NodeFacts(node_ips=("172.30.0.11",), pod_cidrs=("10.244.1.0/24", "10.244.9.0/24"))
    t = table(web(A), node=node)
    assert t.set("cluster-cidrs").elements == ("10.244.1.0/24", "10.244.9.0/24")
    assert t.chain("cluster-ips-check").rules == ("ip daddr @cluster-ips goto reject-chain",)


def test_nodeports_are_served_on_node_addresses_only() -> None:
    t = table(web(A, node_port=30080))
    ext = chain_name("ext", web(), web().ports[0])
    assert t.set("node-ips").elements == ("172.30.0.11",)
    assert t.set("service-nodeports").elements == (f"tcp . 30080 : goto {ext}",)
    assert (
        "ip daddr @node-ips meta l4proto . th dport vmap @service-nodeports"
        in t.chain("services").rules
    )


def test_a_service_without_endpoints_is_rejected_on_every_path() -> None:
    t = table(web(node_port=30080))
    assert t.set("service-ips").elements == ()
    assert t.set("no-endpoint-services").elements == ("10.96.0.10 . tcp . 80 : goto reject-chain",)
    assert t.set("no-endpoint-nodeports").elements == ("tcp . 30080 : goto reject-chain",)
    assert not t.has(chain_name("svc", web(), web().ports[0]))
    for hook in ("input", "forward", "output"):
        chain = t.chain(f"filter-{hook}")
        assert f"type filter hook {hook}" in chain.hook
        assert "ct state new jump endpoints-check" in chain.rules
    checks = t.chain("endpoints-check").rules
    assert "ip daddr . meta l4proto . th dport vmap @no-endpoint-services" in checks
    assert "ip daddr @node-ips meta l4proto . th dport vmap @no-endpoint-nodeports" in checks
    assert t.chain("reject-chain").rules == ("meta l4proto tcp reject with tcp reset", "reject")


def test_unknown_ports_on_cluster_ips_are_rejected_and_unallocated_ips_dropped() -> None:
    t = table(web(A))
    assert t.set("cluster-ips").elements == ("10.96.0.10",)
    assert t.chain("cluster-ips-check").rules == (
        "ip daddr @cluster-ips goto reject-chain",
        "ip daddr 10.96.0.0/16 drop",
    )
    for hook in ("forward", "output"):  # after DNAT: what is still for a ClusterIP is unknown
        assert "ct state new jump cluster-ips-check" in t.chain(f"filter-{hook}").rules
    assert "ct state new jump cluster-ips-check" not in t.chain("filter-input").rules


def test_client_ip_affinity_sends_a_known_client_to_its_endpoint_first() -> None:
    svc = web(A, B, affinity=Affinity.CLIENT_IP, affinity_timeout_s=600)
    t = table(svc)
    port = svc.ports[0]
    rules = t.chain(chain_name("svc", svc, port)).rules
    for i, endpoint in enumerate((A, B)):
        affinity = chain_name("aff", svc, port, endpoint)
        ep = chain_name("ep", svc, port, endpoint)
        assert t.set(affinity).flags == ("dynamic", "timeout")
        assert t.set(affinity).timeout_s == 600
        assert rules[1 + i] == f"ip saddr @{affinity} goto {ep}"
        assert f"update @{affinity} {{ ip saddr }}" in t.chain(ep).rules
    assert rules[-1].startswith("numgen random mod 2 vmap"), "the random pick must come last"


def test_udp_ports_and_headless_services() -> None:
    dns = Service(
        "kube-system",
        "dns",
        "10.96.0.53",
        (ServicePort(53, Protocol.UDP, "dns", endpoints=(A,)), ServicePort(53, name="dns-tcp")),
    )
    headless = Service("default", "db", "", (ServicePort(5432, endpoints=(A,)),))
    t = table(dns, headless)
    assert t.set("service-ips").elements == (
        f"10.96.0.53 . udp . 53 : goto {chain_name('svc', dns, dns.ports[0])}",
    )
    assert t.set("no-endpoint-services").elements == ("10.96.0.53 . tcp . 53 : goto reject-chain",)
    assert t.set("cluster-ips").elements == ("10.96.0.53",), "a headless Service has no VIP"
    ep = t.chain(chain_name("ep", dns, dns.ports[0], A)).rules
    assert ep[-1] == "meta l4proto udp dnat to 10.244.1.2:8080"


def test_every_jump_goto_and_set_reference_resolves() -> None:
    other = Service(
        "prod",
        "api",
        "10.96.3.4",
        (ServicePort(443, node_port=31443, endpoints=(A, B)),),
        affinity=Affinity.CLIENT_IP,
    )
    idle = Service("prod", "idle", "10.96.3.5", (ServicePort(80, node_port=30081),))
    t = table(web(A, B, node_port=30080), other, idle)
    texts = [rule for chain in t.chains for rule in chain.rules]
    texts += [element for s in t.sets for element in s.elements]
    for text in texts:
        for name in targets(text):
            assert t.has(name) and t.chain(name), f"{text!r} jumps to a missing chain"
        for name in re.findall(r"@([\w./-]+)", text):
            assert t.set(name), f"{text!r} uses a missing set"


def test_the_same_state_renders_the_same_text_in_any_input_order() -> None:
    api = Service("prod", "api", "10.96.3.4", (ServicePort(443, endpoints=(B, A)),))
    first = table(web(A, B), api).replace_text()
    second = table(api, web(A, B)).replace_text()
    assert first == second
    assert first.startswith(
        "add table ip pilothouse\ndelete table ip pilothouse\ntable ip pilothouse {\n"
    )


def test_counts_and_chain_names_stay_within_nft_limits() -> None:
    long = "x" * 63
    svc = Service(long, long, "10.96.0.9", (ServicePort(80, name="a" * 15, endpoints=(A,)),))
    t = table(svc, web(A, B))
    assert all(len(c.name) < 256 for c in t.chains)
    assert t.rule_count == sum(len(c.rules) for c in t.chains)
    assert t.element_count == sum(len(s.elements) for s in t.sets)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Endpoint("10.244.1.300", 80), "endpoint.ip"),
        (lambda: Endpoint("10.244.1.3; flush ruleset", 80), "endpoint.ip"),
        (lambda: Endpoint("10.244.1.3", 0), "endpoint.port"),
        (lambda: ServicePort(80, node_port=70000), "nodePort"),
        (lambda: Service("Default", "web", "10.96.0.1", ()), "metadata.namespace"),
        (lambda: Service("default", "web }", "10.96.0.1", ()), "metadata.name"),
        (lambda: Service("default", "web", "::1", ()), "spec.clusterIP"),
        (lambda: Service("d", "w", "10.96.0.1", (ServicePort(80), ServicePort(80))), "twice"),
        (lambda: NodeFacts(service_cidr="10.96.0.1/16"), "service CIDR"),
        (
            lambda: ProxyState(
                node=NODE,
                services=(
                    Service("a", "x", "10.96.0.1", (ServicePort(80, node_port=30001),)),
                    Service("b", "y", "10.96.0.2", (ServicePort(81, node_port=30001),)),
                ),
            ),
            "used by both a/x and b/y",
        ),
    ],
)
def test_bad_state_is_refused_where_it_is_made(make: object, words: str) -> None:
    with pytest.raises(InvalidState, match=re.escape(words)):
        make()  # type: ignore[operator]

"""A pod's /etc/resolv.conf and /etc/hosts for each dnsPolicy, dnsConfig and hostAliases."""

from __future__ import annotations

from nodeagent.dns import resolvconf
from nodeagent.dns.podfiles import (
    DnsConfig,
    DnsOption,
    DnsPolicy,
    HostAlias,
    hosts,
    resolv_conf,
)

NODE = resolvconf.parse(
    "# generated\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\n"
    "search corp.example lab.example\noptions edns0 timeout:2\n"
)


def test_the_node_resolv_conf_is_read_as_resolvers_use_it() -> None:
    assert NODE.nameservers == ("192.0.2.53", "fe80::1%eth0")
    assert NODE.searches == ("corp.example", "lab.example")
    assert NODE.options == ("edns0", "timeout:2")
    assert resolvconf.parse("domain a.example\n").searches == ("a.example",)


def test_cluster_first_points_pods_at_the_node_dns_with_the_cluster_search_path() -> None:
    pod = resolv_conf(
        namespace="shop", policy=DnsPolicy.CLUSTER_FIRST, cluster_dns=["10.244.1.1"], node=NODE
    )
    assert pod.text == (
        "nameserver 10.244.1.1\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
        "options ndots:5\n"
    )
    assert pod.notes == ()


def test_host_network_pods_use_the_node_resolvers_unless_with_host_net() -> None:
    default = resolv_conf(
        namespace="shop",
        policy=DnsPolicy.CLUSTER_FIRST,
        cluster_dns=["10.244.1.1"],
        node=NODE,
        host_network=True,
    )
    assert default.text == NODE.text()
    with_host_net = resolv_conf(
        namespace="shop",
        policy=DnsPolicy.CLUSTER_FIRST_WITH_HOST_NET,
        cluster_dns=["10.244.1.1"],
        node=NODE,
        host_network=True,
    )
    assert with_host_net.text.startswith("nameserver 10.244.1.1\nsearch shop.svc.cluster.local")


def test_default_policy_and_a_node_without_cluster_dns() -> None:
    assert (
        resolv_conf(
            namespace="a", policy=DnsPolicy.DEFAULT, cluster_dns=["10.0.0.1"], node=NODE
        ).text
        == NODE.text()
    )
    fallback = resolv_conf(namespace="a", policy=DnsPolicy.CLUSTER_FIRST, cluster_dns=[], node=NODE)
    assert fallback.text == NODE.text()
    assert "no cluster DNS" in fallback.notes[0]


def test_none_takes_only_dns_config_and_dns_config_merges_into_the_others() -> None:
    config = DnsConfig(
        nameservers=("192.0.2.1",),
        searches=("ns1.svc.cluster-domain.example", "my.dns.search.suffix"),
        options=(DnsOption("ndots", "2"), DnsOption("edns0")),
    )
    none = resolv_conf(
        namespace="a", policy=DnsPolicy.NONE, cluster_dns=["10.0.0.1"], node=NODE, dns_config=config
    )
    assert none.text == (
        "nameserver 192.0.2.1\n"
        "search ns1.svc.cluster-domain.example my.dns.search.suffix\n"
        "options ndots:2 edns0\n"
    )
    merged = resolv_conf(
        namespace="a",
        policy=DnsPolicy.CLUSTER_FIRST,
        cluster_dns=["10.0.0.1"],
        node=NODE,
        dns_config=DnsConfig(
            nameservers=("10.0.0.1", "192.0.2.9"),
            searches=("svc.cluster.local", "extra.example"),
            options=(DnsOption("ndots", "1"),),
        ),
    )
    lines = merged.text.splitlines()
    assert lines[:2] == ["nameserver 10.0.0.1", "nameserver 192.0.2.9"], "no duplicate servers"
    assert lines[2].split()[1:] == [
        "a.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "corp.example",
        "lab.example",
        "extra.example",
    ]
    assert lines[3] == "options ndots:1", "a dnsConfig option replaces the same-named one"


def test_over_long_lists_are_cut_as_the_kubelet_cuts_them() -> None:
    config = DnsConfig(
        nameservers=("192.0.2.1", "192.0.2.2", "192.0.2.3"),
        searches=tuple(f"d{i}.example" for i in range(40)),
    )
    pod = resolv_conf(
        namespace="a",
        policy=DnsPolicy.CLUSTER_FIRST,
        cluster_dns=["10.0.0.1"],
        node=NODE,
        dns_config=config,
    )
    lines = pod.text.splitlines()
    assert [line for line in lines if line.startswith("nameserver")] == [
        "nameserver 10.0.0.1",
        "nameserver 192.0.2.1",
        "nameserver 192.0.2.2",
    ]
    search = next(line for line in lines if line.startswith("search")).split()[1:]
    assert len(search) == 32
    assert len(pod.notes) == 2


def test_hosts_file_names_the_pod_and_its_aliases() -> None:
    text = hosts(
        pod_ips=["10.244.1.5"],
        hostname="web-0",
        namespace="shop",
        subdomain="web",
        host_aliases=[HostAlias("127.0.0.1", ("foo.local", "bar.local"))],
    )
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in lines
    assert "10.244.1.5\tweb-0.web.shop.svc.cluster.local\tweb-0" in lines
    assert lines[-2:] == ["# Entries added by HostAliases.", "127.0.0.1\tfoo.local\tbar.local"]
    plain = hosts(pod_ips=["10.244.1.6"], hostname="api-7f9c", namespace="shop")
    assert plain.splitlines()[-1] == "10.244.1.6\tapi-7f9c"


def test_host_network_pods_get_the_node_hosts_file() -> None:
    text = hosts(
        pod_ips=["192.0.2.10"],
        hostname="node-1",
        namespace="kube-system",
        host_network=True,
        node_hosts="127.0.0.1 localhost\n192.0.2.10 node-1",
        host_aliases=[HostAlias("192.0.2.99", ("registry.local",))],
    )
    assert text.splitlines() == [
        "# Kubernetes-managed hosts file (host network).",
        "127.0.0.1 localhost",
        "192.0.2.10 node-1",
        "",
        "# Entries added by HostAliases.",
        "192.0.2.99\tregistry.local",
    ]

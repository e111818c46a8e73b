"""Render a node's Services state into its one nftables table (pure; no side effects).

The design is kube-proxy's nftables mode (kubernetes `pkg/proxy/nftables/README.md`):
- `services`: one lookup, `ip daddr . meta l4proto . th dport vmap @service-ips`, from the
  DNAT base chains in `prerouting` (pods, other hosts: DNAT must precede routing, since the
  endpoint decides input or forward) and `output` (host-network clients); NodePorts through a
  second lookup on `@node-ips`;
- a chain per service port (`svc-…`) picks an endpoint: a ClientIP affinity hit first, else
  `numgen random mod N vmap`, uniformly; a chain per endpoint (`ep-…`) DNATs to it, records
  the client for affinity and marks hairpin traffic (source == endpoint) for masquerade;
- masquerade in `postrouting`, after the final routing decision, of packets marked on the way
  in: ClusterIP traffic whose source is outside the pod network (the node itself, other hosts;
  replies must come back through this node to be un-DNATed), all NodePort traffic, and hairpin
  traffic (else the endpoint would answer itself directly);
- traffic to a service port with no ready endpoint is rejected (TCP reset, else ICMP port
  unreachable) in `input`, `forward` and `output`, so clients fail at once instead of timing
  out; so is traffic to a ClusterIP on a port it does not serve, after DNAT; addresses of the
  service CIDR that are no ClusterIP are dropped (they may be allocated a moment from now).

Invariants: the same state renders the same table (sets, chains and rules in a stable order);
a headless Service renders nothing; every chain jumped to exists in the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from nodeagent.services.model import Affinity, Endpoint, ProxyState, Service, ServicePort
from nodeagent.services.nftables import Chain, NftSet, Table, vmap

FAMILY = "ip"
TABLE = "pilothouse"
MASQUERADE_MARK = 0x4000  # kube-proxy's bit; only meaningful inside this table's chains
_DPORT = "ip daddr . meta l4proto . th dport"
_NODEPORT = "ip daddr @node-ips meta l4proto . th dport"
_REJECT = "goto reject-chain"


def render(state: ProxyState, *, table: str = TABLE, mark: int = MASQUERADE_MARK) -> Table:
    """The whole table for `state`; apply with `Table.replace_text()`."""
    service_ips: list[str] = []
    nodeports: list[str] = []
    no_endpoints: list[str] = []
    no_endpoint_nodeports: list[str] = []
    cluster_ips: list[str] = []
    affinity_sets: list[NftSet] = []
    per_service: list[Chain] = []
    for svc in sorted(state.services, key=lambda s: (s.namespace, s.name)):
        if svc.headless:
            continue
        cluster_ips.append(svc.cluster_ip)
        for port in svc.ports:
            proto = port.protocol.value
            key = f"{svc.cluster_ip} . {proto} . {port.port}"
            np_key = f"{proto} . {port.node_port}"
            if not port.endpoints:
                no_endpoints.append(f"{key} : {_REJECT}")
                if port.node_port:
                    no_endpoint_nodeports.append(f"{np_key} : {_REJECT}")
                continue
            chain = chain_name("svc", svc, port)
            service_ips.append(f"{key} : goto {chain}")
            if port.node_port:
                ext = chain_name("ext", svc, port)
                nodeports.append(f"{np_key} : goto {ext}")
                per_service.append(Chain(ext, ("jump mark-for-masquerade", f"goto {chain}")))
            chains, sets = _service_port(svc, port, chain)
            per_service.extend(chains)
            affinity_sets.extend(sets)
    return Table(
        FAMILY,
        table,
        comment="Pilothouse Services: rebuilt whole by the node agent, do not edit",
        sets=(
            _set("cluster-cidrs", "ipv4_addr", state.node.pod_network, flags=("interval",)),
            _set("node-ips", "ipv4_addr", sorted(set(state.node.node_ips))),
            _set("cluster-ips", "ipv4_addr", sorted(set(cluster_ips))),
            _map("service-ips", "ipv4_addr . inet_proto . inet_service", service_ips),
            _map("service-nodeports", "inet_proto . inet_service", nodeports),
            _map("no-endpoint-services", "ipv4_addr . inet_proto . inet_service", no_endpoints),
            _map("no-endpoint-nodeports", "inet_proto . inet_service", no_endpoint_nodeports),
            *affinity_sets,
        ),
        chains=(*_base_chains(state, mark), *per_service),
    )


def chain_name(kind: str, svc: Service, port: ServicePort, endpoint: Endpoint | None = None) -> str:
    """`kind-HASH-ns/name/proto/port[__ip/port]`: readable, unique, within nft's 256 bytes."""
    ident = f"{svc.namespace}/{svc.name}/{port.protocol.value}/{port.key}"
    if endpoint is not None:
        ident += f"__{endpoint.ip}/{endpoint.port}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:8]
    return f"{kind}-{digest}-{ident}"[:240]


def _service_port(svc: Service, port: ServicePort, chain: str) -> tuple[list[Chain], list[NftSet]]:
    """The service port's chain, one chain per endpoint, and the affinity sets if any."""
    proto = port.protocol.value
    rules = [
        f"ip daddr {svc.cluster_ip} {proto} dport {port.port} "
        "ip saddr != @cluster-cidrs jump mark-for-masquerade"
    ]
    chains: list[Chain] = []
    sets: list[NftSet] = []
    targets: list[str] = []
    sticky = svc.affinity is Affinity.CLIENT_IP
    for endpoint in port.endpoints:
        ep_chain = chain_name("ep", svc, port, endpoint)
        targets.append(ep_chain)
        ep_rules = [f"ip saddr {endpoint.ip} jump mark-for-masquerade"]
        if sticky:
            affinity = chain_name("aff", svc, port, endpoint)
            sets.append(
                NftSet(
                    affinity,
                    "ipv4_addr",
                    flags=("dynamic", "timeout"),
                    timeout_s=svc.affinity_timeout_s,
                )
            )
            rules.append(f"ip saddr @{affinity} goto {ep_chain}")
            ep_rules.append(f"update @{affinity} {{ ip saddr }}")
        ep_rules.append(f"meta l4proto {proto} dnat to {endpoint}")
        chains.append(Chain(ep_chain, tuple(ep_rules)))
    rules.append(
        vmap(
            f"numgen random mod {len(targets)}",
            [(str(i), f"goto {t}") for i, t in enumerate(targets)],
        )
    )
    return [Chain(chain, tuple(rules)), *chains], sets


def _base_chains(state: ProxyState, mark: int) -> list[Chain]:
    cluster_ips_check = ["ip daddr @cluster-ips " + _REJECT]
    if state.node.service_cidr:
        cluster_ips_check.append(f"ip daddr {state.node.service_cidr} drop")
    checks = ("ct state new jump endpoints-check", "ct state new jump cluster-ips-check")
    return [
        Chain("nat-prerouting", ("jump services",), hook=_hook("nat", "prerouting", "dstnat")),
        # `dstnat` is -100; nft before 1.0.7 accepts the name in prerouting only.
        Chain("nat-output", ("jump services",), hook=_hook("nat", "output", "-100")),
        Chain(
            "nat-postrouting", ("jump masquerading",), hook=_hook("nat", "postrouting", "srcnat")
        ),
        Chain("filter-input", checks[:1], hook=_hook("filter", "input", "filter")),
        Chain("filter-forward", checks, hook=_hook("filter", "forward", "filter")),
        Chain("filter-output", checks, hook=_hook("filter", "output", "filter")),
        Chain("services", (f"{_DPORT} vmap @service-ips", f"{_NODEPORT} vmap @service-nodeports")),
        Chain(
            "endpoints-check",
            (f"{_DPORT} vmap @no-endpoint-services", f"{_NODEPORT} vmap @no-endpoint-nodeports"),
        ),
        Chain("cluster-ips-check", tuple(cluster_ips_check)),
        Chain("reject-chain", ("meta l4proto tcp reject with tcp reset", "reject")),
        Chain("mark-for-masquerade", (f"meta mark set meta mark or {mark:#x}",)),
        Chain(
            "masquerading",
            (
                f"meta mark & {mark:#x} == 0 return",
                f"meta mark set meta mark xor {mark:#x}",
                "masquerade fully-random",
            ),
        ),
    ]


def _hook(kind: str, hook: str, priority: str) -> str:
    return f"type {kind} hook {hook} priority {priority}"


def _set(
    name: str, key_type: str, elements: Iterable[str], *, flags: tuple[str, ...] = ()
) -> NftSet:
    return NftSet(name, key_type, tuple(elements), flags=flags)


def _map(name: str, key_type: str, elements: list[str]) -> NftSet:
    return NftSet(name, key_type, tuple(elements), map_to="verdict")

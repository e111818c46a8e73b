"""Node agent: the Services data plane (ClusterIPs, NodePorts) in one nftables table.

- `model`: the plain, validated state it is programmed from (`ProxyState`: Services with
  their ready endpoints, and the node's facts);
- `render`: a pure function from that state to the table (kube-proxy's nftables design);
- `nftables`: the table's structure and its `nft -f` text;
- `proxy.DataPlane`: applies the table atomically in a network namespace, and removes it;
- `requirements`: what the node must provide (nft, forwarding, br_netfilter);
- `conntrack`: the tracking of unanswered connections to endpoints that left the table.

No proxy process sits in the data path: the kernel does the load balancing. This package
depends on nothing else of the agent; the agent converts what the control plane pushes into
`model` values.
"""

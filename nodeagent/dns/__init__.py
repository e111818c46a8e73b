"""Node agent: the per-node DNS server for pods, and the DNS files each pod gets.

- `records`: the cluster's names (Kubernetes DNS spec) from plain data, and `Zone.lookup`;
- `responder`: one DNS message in, one out (dnspython wire format), local or forwarded;
- `upstream`: forwarding of other names to the node's resolvers (a resolv.conf);
- `server.DnsServer`: UDP and TCP listeners on one address;
- `resolvconf`, `podfiles`: the node's resolv.conf read, a pod's /etc/resolv.conf and
  /etc/hosts written (dnsPolicy, dnsConfig, hostAliases), as the kubelet does.

This package depends on nothing else of the agent; the agent converts pushed Services and
endpoints into `records.ClusterRecords`.
"""

"""Node agent: service discovery on the node, from what the control plane pushes.

- `convert`: the pushed Services and EndpointSlices as the data plane's `ProxyState` and the
  DNS server's `ClusterRecords` (pure);
- `sync.ServiceSync`: a runnable that programs the node's nftables table (`services`) and
  answers DNS (`dns`) from the newest push, coalescing bursts, and says when a push is in
  effect (the control plane waits for that before stopping a deleted pod);
- `podfiles.PodFiles`: each pod's /etc/resolv.conf and /etc/hosts, bind-mounted into its
  containers.

The pod workers know nothing of it: the agent's main hands them `PodFiles` as a callable,
and its API calls `ServiceSync.push` before `PodManager.sync`, so a pod leaving the node is
out of the node's load balancing before its containers are stopped.
"""

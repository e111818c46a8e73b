"""Nodes: how the control plane knows its node agents and keeps them in step with the store.

Vocabulary:
- agent: one node-agent process; it registers its Node and then heartbeats.
- instance: the id an agent registers with (`pilothouse.io/agent-instance` annotation on the
  Node). A node name belongs to one instance at a time; another instance may take it over only
  once the owner's heartbeats have stopped for the grace period.
- endpoint: where the control plane reaches the agent: the Node's InternalIP address and its
  `daemonEndpoints.kubeletEndpoint.port` ("HOST:PORT").
- desired pod set: every pod bound to the node (spec.nodeName) and not being deleted.
- push: one `SyncPods` call carrying the node's whole desired pod set.
- fencing: after a node (re)registers, or comes back after being marked NotReady, its Ready
  condition is False with reason `Fencing` until a push made after that moment has succeeded,
  so the agent has stopped every pod no longer its own before the node counts as Ready again.

Modules: `conditions` (pure Node condition helpers), `registry` (RegisterNode / Heartbeat
semantics, heartbeat times kept in memory), `agent` (the gRPC client of one agent), `syncer`
(one NodeSyncer per node, pushing, and the NodeSyncManager runnable), `reports` (what an agent
reports back, pod statuses and events, written to the store), `podcidr` (pod address ranges),
`settings` (the flags).
`conditions` and `registry` import no gRPC, so controllers may use them.
"""

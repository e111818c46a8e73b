"""The control-plane process: desired state in etcd, reconciled towards the node agents.

Sub-packages follow ARCHITECTURE.md (api, store, cache, controllers, scheduler, nodes, leader);
`controlplane.main` wires them by hand. Never imports `nodeagent`.
"""

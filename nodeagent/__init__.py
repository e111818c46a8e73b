"""The node-agent process: turns a node's desired pod set into supervised runc containers.

Sub-packages follow ARCHITECTURE.md (api, pods, runtime, images, network, state);
`nodeagent.main` wires them by hand. Never imports `controlplane`.
"""

"""Node agent: pod networking (see ARCHITECTURE.md).

Each pod gets its own network namespace (`netns`: a pinned namespace file per pod), which its
containers join, and which the CNI plugins (`cni.CniNetwork`: bridge, host-local, portmap from
Debian's containernetworking-plugins) wire to the node's pod bridge with an address from the
node's pod CIDR. The agent creates the namespace and attaches it before a pod's first
container starts, and detaches and deletes it after the pod's last container is removed.
"""

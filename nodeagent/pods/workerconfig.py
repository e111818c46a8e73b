"""What a pod worker is configured with: state directory, backoffs, probes, node policy,
network sandboxes, pod files, node mounts and volume resolvers.

Role: one frozen value the agent builds from its own configuration and hands to every
`PodWorker` (nodeagent.pods.worker). Invariant: defaults fit the fake runtime (no network
sandbox, no node mounts), so tests build one with a state directory alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.network.sandbox import Mode, PodNetworks
from nodeagent.pods import attempts
from nodeagent.pods.restart import BackoffConfig
from nodeagent.pods.security import NodePolicy
from nodeagent.pods.volumes import Resolver
from nodeagent.probes import Handler


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    state_dir: Path
    pids_limit: int = 1024
    host_ip: str = "127.0.0.1"
    restart_backoff: BackoffConfig = field(default_factory=BackoffConfig)
    image_backoff: BackoffConfig = field(default_factory=BackoffConfig)
    # Who performs probe checks; None: the handlers that fit the runtime (runc: real ones).
    probes: Handler | None = None
    # What the node's administrator allows (--allow-probe-host, --allow-unconfined-seccomp).
    policy: NodePolicy = field(default_factory=NodePolicy)
    # The pod's network sandbox: made before its containers, removed after them.
    networks: PodNetworks = field(
        default_factory=lambda: PodNetworks(mode=Mode.NONE, state_dir=Path("."))
    )
    # Each pod's /etc/resolv.conf and /etc/hosts (None: the image's own, untouched).
    pod_files: attempts.PodFiles | None = None
    # The node mounts what pods need (tmpfs volumes, pinned IPC/PID namespaces): the runc
    # runtime's agents; off, plain directories and no shared namespaces (fake runtime).
    node_mounts: bool = False
    # Volume sources the pods package does not make itself (persistentVolumeClaim), by the
    # Volume field's name: (pod, volume) -> the node directory to bind.
    volume_resolvers: dict[str, Resolver] = field(default_factory=dict)

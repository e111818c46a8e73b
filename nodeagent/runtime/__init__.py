"""The ContainerRuntime interface: create, start, kill, wait, delete, state, list over plain data.

Vocabulary:
- container id: unique on the node, chosen by the caller (pod workers use
  "<namespace>_<pod>_<container>_<attempt>"); also the runc id and the cgroup leaf name.
- spec (`ContainerSpec`): everything needed to run one process tree: rootfs, process, limits.
  The runtime turns it into an OCI bundle; callers never see OCI JSON.
- monitor: the small per-container process that holds stdio, writes the log and records the
  exit status, so containers and their exit codes outlive the agent.

Invariants:
- A container created by one agent process is visible to the next through `list()` and
  `state()` (re-adoption); nothing about a running container lives only in agent memory.
- `wait` returns the real exit status even if the container ended while no agent ran.
- `delete` removes the bundle, cgroup and monitor state; it is idempotent.

Implementations: `nodeagent.runtime.runc.RuncRuntime` (real) and
`nodeagent.runtime.fake.FakeRuntime` (knobs `run_for`, `exit_code`, `start_error`; unit tests
and hollow nodes). Both pass tests/contract/test_runtime.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class RuntimeError_(Exception):
    """A runtime operation failed; the message is what runc (or the monitor) said."""


class ContainerNotFound(RuntimeError_):
    """No container with that id exists on this node."""


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount, described, not performed (containerd's style)."""

    type: str
    source: str
    target: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resources:
    memory_limit_bytes: int | None = None
    cpu_limit_millis: int | None = None  # -> CFS quota/period
    cpu_request_millis: int | None = None  # -> cpu.shares (v1) / cpu.weight (v2)
    pids_limit: int = 1024


class Seccomp(enum.Enum):
    """The seccomp filter a container runs under (Kubernetes' seccompProfile types)."""

    RUNTIME_DEFAULT = "RuntimeDefault"  # Docker's default profile (runtime.seccomp)
    UNCONFINED = "Unconfined"  # no filter


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    id: str
    hostname: str
    # The container's root: either a ready directory (`rootfs`) or mounts that assemble it
    # (an overlay mount targeting "/"), performed by the runtime before start.
    rootfs: str
    rootfs_mounts: tuple[Mount, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    resources: Resources = field(default_factory=Resources)
    log_path: str = ""  # CRI-format log file written by the monitor
    netns_path: str | None = None  # join this network namespace instead of a new one
    # Bind mounts into the container (a pod's /etc/resolv.conf and /etc/hosts), performed by
    # the runtime inside the container's mount namespace; targets are container paths.
    mounts: tuple[Mount, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # kept with the container, for re-adoption
    seccomp: Seccomp = Seccomp.RUNTIME_DEFAULT
    privileges: Privileges = field(default_factory=lambda: Privileges())
    # Join these namespaces of the pod (pinned files or /proc/<pid>/ns/… paths), by type:
    # "ipc" (every container of a pod shares one), "pid" (shareProcessNamespace).
    namespaces: dict[str, str] = field(default_factory=dict)
    # Names of `env` variables whose values must never be written to disk (from Secrets):
    # the runtime keeps them out of the bundle once the container is created.
    secret_env: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Privileges:
    """What the container's processes may do beyond the defaults (securityContext)."""

    # Capability names ("CAP_NET_ADMIN"); None: the runtime's default set.
    capabilities: tuple[str, ...] | None = None
    no_new_privileges: bool = True  # allowPrivilegeEscalation: false (the default here)
    read_only_root: bool = False
    additional_gids: tuple[int, ...] = ()  # supplementalGroups and fsGroup
    sysctls: tuple[tuple[str, str], ...] = ()  # namespaced sysctls set in the container
    # Every capability, the node's devices, no masked paths (only where the node allows it).
    privileged: bool = False


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ContainerState:
    id: str
    status: Status
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)


class ContainerRuntime(Protocol):
    async def create(self, spec: ContainerSpec) -> ContainerState: ...

    async def start(self, container_id: str) -> ContainerState: ...

    async def kill(self, container_id: str, *, signal: int = 15) -> None: ...

    async def wait(self, container_id: str) -> ContainerState:
        """Return once the container has stopped; its final state (exit code, OOM)."""
        ...

    async def delete(self, container_id: str) -> None: ...

    async def state(self, container_id: str) -> ContainerState: ...

    async def list(self) -> list[ContainerState]: ...

    async def version(self) -> str: ...

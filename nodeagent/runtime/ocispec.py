"""The OCI runtime-spec `config.json` for one container, built from a ContainerSpec.

A pure function of its inputs (the spec, the node's settings and the rootfs path): no file,
process or cgroup is touched here, so it is unit-tested without root.

Invariants of every config built here:
- new pid, mount, uts, ipc and cgroup namespaces; a new network namespace unless the spec
  joins one (`netns_path`, the pod's sandbox);
- Docker's default capability set in bounding/effective/permitted (never inheritable or
  ambient), `noNewPrivileges`, Docker's masked and read-only /proc and /sys paths, unless the
  spec's `Privileges` say otherwise (securityContext: capabilities, allowPrivilegeEscalation,
  readOnlyRootFilesystem, supplementalGroups, sysctls; privileged: every capability, the
  node's devices, nothing masked);
- the pod's shared namespaces (`spec.namespaces`: ipc, pid) joined by path;
- Docker's default seccomp profile (`runtime.seccomp`) unless the spec is Unconfined;
- an absolute `cgroupsPath` under the node's cgroup parent (a relative or missing one makes
  runc nest the container's cgroups under the caller's own on cgroup v1);
- no rlimit above the caller's own hard limit (the agent may lack CAP_SYS_RESOURCE);
- the memory limit caps memory+swap as well, so a container cannot swap past its limit.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

from nodeagent.runtime import ContainerSpec, Mount, Seccomp, seccomp
from pilothouse.oci.capabilities import DEFAULT_CAPABILITIES  # Docker's default set

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CFS_PERIOD_US = 100_000
NOFILE_CEILING = 1_048_576

# Every capability of Linux 5.9+ (what a privileged container gets).
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES,
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_DAC_READ_SEARCH",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_NET_ADMIN",
    "CAP_NET_BROADCAST",
    "CAP_PERFMON",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
)

# Docker's defaults (moby oci/defaults.go).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What the config depends on beyond the ContainerSpec: the node and the agent itself."""

    cgroup_parent: str = "/pilothouse"
    nofile_limit: int = 1024  # soft = hard; never above the agent's own hard limit
    swap_limit: bool = True  # the kernel accounts swap (v1 memory.memsw.*; v2 memory.swap.max)

    @classmethod
    def from_host(
        cls, *, cgroup_parent: str = "/pilothouse", swap_limit: bool = True
    ) -> NodeSettings:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        ceiling = NOFILE_CEILING if hard == resource.RLIM_INFINITY else min(NOFILE_CEILING, hard)
        return cls(cgroup_parent=cgroup_parent, nofile_limit=ceiling, swap_limit=swap_limit)


def cgroups_path(spec_id: str, settings: NodeSettings) -> str:
    """The container's absolute cgroup path, the same under every controller."""
    parent = "/" + settings.cgroup_parent.strip("/")
    return f"{parent}/{spec_id}" if parent != "/" else f"/{spec_id}"


def cpu_shares(request_millis: int | None) -> int | None:
    """Kubernetes' formula: 1 cpu = 1024 shares, at least 2 (runc maps shares to v2 weight)."""
    if request_millis is None:
        return None
    return max(2, request_millis * 1024 // 1000)


def build(spec: ContainerSpec, *, settings: NodeSettings, rootfs: str) -> dict[str, Any]:
    """The config.json dict for `spec`, with `rootfs` as the container's root directory."""
    linux: dict[str, Any] = {
        "cgroupsPath": cgroups_path(spec.id, settings),
        "resources": _resources(spec, settings),
        "namespaces": _namespaces(spec),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if spec.seccomp is Seccomp.RUNTIME_DEFAULT:
        linux["seccomp"] = seccomp.profile()
    privileges = spec.privileges
    if privileges.sysctls:
        linux["sysctl"] = dict(privileges.sysctls)
    if privileges.privileged:
        # As containerd runs a privileged container: nothing masked or read-only, every device.
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(spec, settings),
        "root": {"path": rootfs, "readonly": spec.privileges.read_only_root},
        "hostname": spec.hostname,
        "mounts": [*_mounts(), *(_bind(m) for m in spec.mounts)],
        "linux": linux,
    }


def _process(spec: ContainerSpec, settings: NodeSettings) -> dict[str, Any]:
    if not spec.args:
        raise ValueError(f'container "{spec.id}" has no command to run (empty args)')
    env = list(spec.env)
    names = {e.split("=", 1)[0] for e in env}
    if "PATH" not in names:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in names:
        env.append(f"HOSTNAME={spec.hostname}")
    privileges = spec.privileges
    if privileges.privileged:
        caps = list(ALL_CAPABILITIES)
    elif privileges.capabilities is not None:
        caps = list(privileges.capabilities)
    else:
        caps = list(DEFAULT_CAPABILITIES)
    nofile = settings.nofile_limit
    user: dict[str, Any] = {"uid": spec.uid, "gid": spec.gid}
    if privileges.additional_gids:
        user["additionalGids"] = list(privileges.additional_gids)
    return {
        "terminal": False,
        "user": user,
        "args": list(spec.args),
        "env": env,
        "cwd": spec.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
        "noNewPrivileges": privileges.no_new_privileges and not privileges.privileged,
    }


def _namespaces(spec: ContainerSpec) -> list[dict[str, str]]:
    network: dict[str, str] = {"type": "network"}
    if spec.netns_path:
        network["path"] = spec.netns_path
    pid: dict[str, str] = {"type": "pid"}
    ipc: dict[str, str] = {"type": "ipc"}
    if "pid" in spec.namespaces:
        pid["path"] = spec.namespaces["pid"]
    if "ipc" in spec.namespaces:
        ipc["path"] = spec.namespaces["ipc"]
    return [
        pid,
        network,
        ipc,
        {"type": "uts"},
        {"type": "mount"},
        {"type": "cgroup"},
    ]


def _resources(spec: ContainerSpec, settings: NodeSettings) -> dict[str, Any]:
    res = spec.resources
    out: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],  # runc adds the standard /dev set
        "pids": {"limit": res.pids_limit},
    }
    if res.memory_limit_bytes is not None:
        memory: dict[str, int] = {"limit": res.memory_limit_bytes}
        if settings.swap_limit:
            memory["swap"] = res.memory_limit_bytes
        out["memory"] = memory
    cpu: dict[str, int] = {}
    if res.cpu_limit_millis is not None:
        cpu["quota"] = max(1000, res.cpu_limit_millis * CFS_PERIOD_US // 1000)
        cpu["period"] = CFS_PERIOD_US
    shares = cpu_shares(res.cpu_request_millis)
    if shares is not None:
        cpu["shares"] = shares
    if cpu:
        out["cpu"] = cpu
    return out


def _bind(mount: Mount) -> dict[str, Any]:
    """A bind mount the spec asks for (a file or directory of the node into the container)."""
    if mount.type != "bind" or not mount.target.startswith("/") or ".." in mount.target:
        raise ValueError(f"unsupported container mount {mount.type} {mount.target!r}")
    options = list(mount.options) or ["rbind", "rprivate"]
    return {"destination": mount.target, "type": "bind", "source": mount.source, "options": options}


def _mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]

"""What a node reports about itself: capacity, allocatable, OS, kernel, runtime, architecture.

Invariants: quantities are Kubernetes strings (cpu "4", memory "16318464Ki", pods "110");
facts are read from the host once (/proc/meminfo, /etc/os-release, uname) and never fail:
an unreadable source gives an empty value, not an error. An operator's override (`--cpu`,
`--memory`) replaces the machine's figure in both capacity and allocatable, so the scheduler
places pods as if the node had exactly that much.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import pilothouse
from pilothouse import quantity
from pilothouse.v1 import objects_pb2

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@dataclass(frozen=True, slots=True)
class NodeFacts:
    capacity: dict[str, str]
    allocatable: dict[str, str]
    info: objects_pb2.NodeSystemInfo


def memory_bytes(meminfo: str = "/proc/meminfo") -> int:
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def os_image(os_release: str = "/etc/os-release") -> str:
    try:
        for line in Path(os_release).read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return ""


def agent_version() -> str:
    """This build's version, as `pilothouse --version` shows it (not from the installed
    package's metadata: importlib.metadata costs each agent ~1.5 MiB of modules)."""
    return "v" + pilothouse.__version__


def gather(
    *,
    runtime_version: str,
    max_pods: int,
    cpu_millis: int | None = None,
    memory_bytes_override: int | None = None,
) -> NodeFacts:
    """The node's facts; `cpu_millis`/`memory_bytes_override` replace the machine's figures."""
    machine_id = ""
    with contextlib.suppress(OSError):
        machine_id = Path("/etc/machine-id").read_text().strip()
    uname = platform.uname()
    capacity = {
        "cpu": quantity.format_cpu(
            cpu_millis if cpu_millis is not None else (os.cpu_count() or 1) * 1000
        ),
        "memory": quantity.format_memory(
            memory_bytes_override if memory_bytes_override is not None else memory_bytes()
        ),
        "pods": str(max_pods),
    }
    info = objects_pb2.NodeSystemInfo(
        machine_id=machine_id,
        kernel_version=uname.release,
        os_image=os_image(),
        container_runtime_version=runtime_version,
        kubelet_version=agent_version(),
        operating_system=uname.system.lower(),
        architecture=_ARCH.get(uname.machine, uname.machine),
    )
    return NodeFacts(capacity=capacity, allocatable=dict(capacity), info=info)

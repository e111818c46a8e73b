"""Reading resource usage counters: a container's cgroup, a pod's network interface, the node.

What is read, as the kubelet's cAdvisor reads it:
- CPU: the cgroup's cumulative CPU time in nanoseconds (v1 `cpuacct.usage`, v2 `cpu.stat`
  usage_usec); a rate needs two readings (`nodeagent.pods.usage` keeps them).
- memory working set: usage minus inactive file pages (v1 `memory.usage_in_bytes` minus
  `total_inactive_file`, v2 `memory.current` minus `inactive_file`), never below 0: the
  memory the kernel cannot simply drop, what limits and OOM kills are about.
- network: receive and transmit bytes of every interface but loopback in the network
  namespace of a process of the pod (`/proc/<pid>/net/dev`).
- node: busy CPU time from /proc/stat, memory MemTotal - MemAvailable from /proc/meminfo.

Invariants: pure reads of files; a missing file (a container that just ended) reads as None,
never as an error; nothing here keeps state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nodeagent.runtime.cgroups import Cgroups


@dataclass(frozen=True, slots=True)
class CgroupReading:
    cpu_ns: int  # cumulative CPU time
    memory_working_set_bytes: int


@dataclass(frozen=True, slots=True)
class NetworkReading:
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True, slots=True)
class NodeReading:
    cpu_ns: int  # cumulative busy CPU time of every core
    memory_working_set_bytes: int


def read_cgroup(cgroups: Cgroups, cgroup_path: str) -> CgroupReading | None:
    """A container's counters, or None when its cgroup is gone."""
    try:
        if cgroups.v2:
            base = cgroups.dir("", cgroup_path)
            cpu_ns = _stat(base / "cpu.stat").get("usage_usec", 0) * 1000
            usage = int((base / "memory.current").read_text())
            inactive = _stat(base / "memory.stat").get("inactive_file", 0)
        else:
            cpu_ns = int((cgroups.dir("cpuacct", cgroup_path) / "cpuacct.usage").read_text())
            memory = cgroups.dir("memory", cgroup_path)
            usage = int((memory / "memory.usage_in_bytes").read_text())
            stat = _stat(memory / "memory.stat")
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
    except (OSError, ValueError):
        return None
    return CgroupReading(cpu_ns=cpu_ns, memory_working_set_bytes=max(0, usage - inactive))


def read_network(pid: int) -> NetworkReading | None:
    """Bytes through the interfaces of `pid`'s network namespace (loopback left out)."""
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except OSError:
        return None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == "lo" or not counters:
            continue
        fields = counters.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return NetworkReading(rx_bytes=rx, tx_bytes=tx)


def read_node(proc: Path = Path("/proc")) -> NodeReading | None:
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
        meminfo = _meminfo(proc / "meminfo")
    except (OSError, IndexError, ValueError):
        return None
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    total = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    return NodeReading(
        cpu_ns=busy * 1_000_000_000 // hz, memory_working_set_bytes=max(0, total - available)
    )


def _stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _meminfo(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out

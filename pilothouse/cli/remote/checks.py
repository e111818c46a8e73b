"""What a host is, and whether it can run a role: one probe, one line naming all that is missing.

`PROBE` is a POSIX shell script run on the host (as root once `Host.elevate` succeeded) that
prints `key=value` facts; `parse` reads them into `Facts`; `missing(facts, role)` is pure and
lists every reason the host cannot take the role: not Debian 12, no cgroup v2 or one of its
cpu/memory/pids controllers, no overlayfs, no systemd, another CPU architecture or Python than
the wheels built here. The probe changes nothing on the host except loading the overlay module
(as `modprobe overlay` would at the first container anyway).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

from pilothouse.cli.remote.roles import Role

PROBE = r"""
. /etc/os-release 2>/dev/null
echo "os=${ID:-unknown}"
echo "version=${VERSION_ID:-}"
echo "pretty=${PRETTY_NAME:-unknown}"
echo "cgroupfs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null
grep -qw overlay /proc/filesystems 2>/dev/null && echo overlay=yes || echo overlay=no
test -d /run/systemd/system && echo systemd=yes || echo systemd=no
echo "machine=$(uname -m)"
echo "kernel=$(uname -r)"
echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
"""

NEEDED_CONTROLLERS = ("cpu", "memory", "pids")


@dataclass(frozen=True, slots=True)
class Facts:
    os: str
    version: str
    pretty: str
    cgroupfs: str
    controllers: frozenset[str]
    overlay: bool
    systemd: bool
    machine: str
    kernel: str
    python: str
    root: bool  # the user is root or has passwordless sudo


def parse(text: str, *, root: bool) -> Facts:
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    return Facts(
        os=values.get("os", "unknown"),
        version=values.get("version", ""),
        pretty=values.get("pretty", "unknown"),
        cgroupfs=values.get("cgroupfs", ""),
        controllers=frozenset(values.get("controllers", "").split()),
        overlay=values.get("overlay") == "yes",
        systemd=values.get("systemd") == "yes",
        machine=values.get("machine", ""),
        kernel=values.get("kernel", ""),
        python=values.get("python", ""),
        root=root,
    )


def local_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def missing(facts: Facts, role: Role, *, user: str) -> list[str]:
    """Every reason the host cannot take `role` (empty: it can)."""
    problems = []
    if not facts.root:
        problems.append(f"{user} is not root and has no passwordless sudo")
    if facts.os != "debian" or facts.version != "12":
        problems.append(f"not Debian 12 (found {facts.pretty})")
    if facts.cgroupfs != "cgroup2fs":
        found = facts.cgroupfs or "nothing"
        problems.append(f"no cgroup v2 at /sys/fs/cgroup (found {found})")
    elif role is Role.AGENT:
        lacking = [c for c in NEEDED_CONTROLLERS if c not in facts.controllers]
        if lacking:
            problems.append(f"cgroup v2 controller {', '.join(lacking)} not enabled")
    if role is Role.AGENT and not facts.overlay:
        problems.append("no overlayfs (modprobe overlay failed)")
    if not facts.systemd:
        problems.append("systemd is not running (Pilothouse runs as a systemd unit)")
    if facts.machine and facts.machine != platform.machine():
        problems.append(
            f"CPU {facts.machine}, but the wheels copied from here are for {platform.machine()}"
        )
    if facts.python and facts.python != local_python():
        problems.append(
            f"Python {facts.python}, but the wheels copied from here are for {local_python()}"
        )
    return problems

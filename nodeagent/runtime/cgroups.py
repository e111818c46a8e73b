"""Reading and removing a container's cgroups, on cgroup v1 (hybrid too) and v2.

runc creates and configures the cgroups from the OCI config; this module only looks at what
exists: whether the memory limit killed a process, and removing what is left after delete.

Vocabulary: a cgroup path is the absolute path from the config's `cgroupsPath`
("/pilothouse/<id>"), the same under every v1 controller's hierarchy and under the v2 root.

Invariants: nothing here writes a limit; `remove` only removes empty leaf directories that
belong to the given path, in every hierarchy, and is idempotent.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class Cgroups:
    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()

    def hierarchies(self) -> list[Path]:
        """The mount points of every hierarchy (v1 controllers, named and the unified one)."""
        if self.v2:
            return [self.root]
        out = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype = right.split(" ", 1)[0]
                point = Path(left.split(" ")[4])
                if fstype in ("cgroup", "cgroup2") and point.is_relative_to(self.root):
                    out.append(point)
        return out

    def dir(self, controller: str, cgroup_path: str) -> Path:
        """The directory of `cgroup_path` under one v1 controller (or under the v2 root)."""
        rel = cgroup_path.lstrip("/")
        return self.root / rel if self.v2 else self.root / controller / rel

    def dirs(self, cgroup_path: str) -> list[Path]:
        """Every directory that exists for `cgroup_path`, in every hierarchy."""
        rel = cgroup_path.lstrip("/")
        return [h / rel for h in self.hierarchies() if (h / rel).is_dir()]

    def swap_accounting(self) -> bool:
        if self.v2:
            return True  # runc skips memory.swap.max when swap equals the limit and it is absent
        return (self.root / "memory" / "memory.memsw.limit_in_bytes").exists()

    def oom_killed(self, cgroup_path: str) -> bool:
        """Whether the kernel's OOM killer killed a process in this cgroup."""
        if self.v2:
            return _counter(self.dir("memory", cgroup_path) / "memory.events", "oom_kill") > 0
        return _counter(self.dir("memory", cgroup_path) / "memory.oom_control", "oom_kill") > 0

    def remove(self, cgroup_path: str) -> None:
        """Remove the cgroup's directories (children first) in every hierarchy."""
        for top in self.dirs(cgroup_path):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(dirpath)


def _counter(path: Path, key: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0

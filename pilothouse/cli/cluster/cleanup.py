"""Forced clean-up of a local cluster from its data dir alone: what `down` does after a crash.

The clean way to remove pods is through their agent (`probes.drain`): the agent stops each
container within its grace period and removes its rootfs mount and cgroups. This module is
the backstop that runs after it, always, and alone when the agents are gone:

1. containers: every one in a node's runc state (`<node>/runtime/runc`) is `runc delete
   --force`d (killed and deleted by runc itself);
2. processes: any of the cluster's programs left whose command line names a path in the
   data dir (container monitors, an orphaned etcd) are SIGKILLed;
3. cgroups: under the cluster's own cgroup parent, in every hierarchy, bottom-up: remaining
   processes killed, directories removed;
4. mounts: every mount point inside the data dir is detached, deepest first;
5. files: what `up` made in the data dir is deleted, but only once no mount is left inside
   it, so a deletion can never run into a mounted file system.

Invariants: idempotent; touches only the data dir, the cluster's cgroup parent and
processes that name the data dir; never raises for something already gone. What it could
not remove is returned, so `down` can say so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from pilothouse import libc
from pilothouse.cli.cluster import processes
from pilothouse.cli.cluster.layout import Layout

log = structlog.get_logger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
# What a local cluster runs: argv[0] base names, and the modules of its Python children
# ("pilothouse.cluster" is where a detached `up` ran before it moved under the CLI).
PROGRAMS = frozenset(
    {
        "etcd",
        "docker-registry",
        "conmon",
        "runc",
        "controlplane",
        "nodeagent",
        "pilothouse.cli.cluster",
        "pilothouse.cluster",
    }
)
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What clean-up could not remove; empty when everything is gone."""

    mounts: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    processes: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.mounts or self.cgroups or self.processes)

    def describe(self) -> str:
        parts = []
        if self.processes:
            parts.append("processes " + ", ".join(str(p) for p in self.processes))
        if self.mounts:
            parts.append("mounts " + ", ".join(self.mounts))
        if self.cgroups:
            parts.append("cgroups " + ", ".join(self.cgroups))
        return "; ".join(parts)


def sweep(layout: Layout, *, remove_files: bool = True) -> Leftovers:
    """Remove every container, process, cgroup, mount (and file) the cluster left behind."""
    delete_containers(layout)
    processes.kill(processes.naming(layout.data_dir, programs=PROGRAMS))
    cgroups = remove_cgroups(layout.cgroup_parent)
    mounts = unmount_below(layout.data_dir)
    if remove_files and not mounts:
        for path in layout.made():
            _remove(path)
    left = Leftovers(
        mounts=tuple(str(m) for m in mounts),
        cgroups=tuple(str(c) for c in cgroups),
        processes=tuple(r.pid for r in processes.naming(layout.data_dir, programs=PROGRAMS)),
    )
    if left:
        log.warning("cluster.leftovers", data_dir=str(layout.data_dir), left=left.describe())
    return left


def delete_containers(layout: Layout) -> list[str]:
    """`runc delete --force` every container in every node's runc state; their ids."""
    runc = shutil.which("runc")
    deleted: list[str] = []
    if not layout.nodes.is_dir():
        return deleted
    for node in sorted(p for p in layout.nodes.iterdir() if p.is_dir()):
        root = node / "runtime" / "runc"
        if not root.is_dir():
            continue
        for container in sorted(p for p in root.iterdir() if p.is_dir()):
            if runc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    subprocess.run(
                        [runc, "--root", str(root), "delete", "--force", container.name],
                        capture_output=True,
                        timeout=30,
                    )
            deleted.append(container.name)
            log.info("cluster.container_deleted", node=node.name, container=container.name)
    return deleted


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers, named ones, the v2 root)."""
    found = []
    for point, fstype in _mounts():
        if fstype in ("cgroup", "cgroup2") and point.is_relative_to(CGROUP_FS):
            found.append(point)
    return found


def remove_cgroups(cgroup_path: str) -> list[Path]:
    """Kill what runs under `cgroup_path` and remove its directories; those left."""
    relative = cgroup_path.strip("/")
    if not relative:
        raise ValueError("refusing to remove the root cgroup")
    trees = [h / relative for h in cgroup_hierarchies() if (h / relative).is_dir()]
    left: list[Path] = []
    for tree in trees:
        dirs = sorted((p for p, _, _ in os.walk(tree)), key=lambda p: p.count("/"), reverse=True)
        for d in dirs:
            if not _remove_cgroup(Path(d)):
                left.append(Path(d))
    return left


def _remove_cgroup(path: Path) -> bool:
    for _attempt in range(50):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            for pid in _cgroup_pids(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
    log.warning("cluster.cgroup_left", cgroup=str(path))
    return False


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def mounts_below(directory: Path) -> list[Path]:
    prefix = directory.resolve()
    return [p for p, _ in _mounts() if p != prefix and p.is_relative_to(prefix)]


def unmount_below(directory: Path) -> list[Path]:
    """Detach every mount inside `directory`, deepest first; the mount points left."""
    for _round in range(3):
        points = sorted(mounts_below(directory), key=lambda p: len(p.parts), reverse=True)
        if not points:
            return []
        for point in points:
            try:
                libc.umount2(point, libc.MNT_DETACH)
            except OSError as exc:
                log.warning("cluster.unmount_failed", mount=str(point), error=exc.strerror)
            else:
                log.info("cluster.unmounted", mount=str(point))
    return mounts_below(directory)


def _mounts() -> list[tuple[Path, str]]:
    """(mount point, file-system type) of every mount this process sees."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), left.split(" ")[4])
            found.append((Path(point), right.split(" ", 1)[0]))
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

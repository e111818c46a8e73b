"""The node's side of pod volumes: directories, tmpfs mounts, hostPath checks, ownership.

`VolumeHost(tmpfs=True)` (the runc runtime's agents) backs memory volumes with tmpfs mounts;
`tmpfs=False` (the fake runtime, hollow nodes, unit tests) uses plain directories, so nothing
is mounted where no container will ever run.

hostPath `type` checks, with the kubelet's messages (`hostPath type check failed: /x is not a
directory`): "" (none), DirectoryOrCreate (made 0755 when missing), Directory, FileOrCreate
(made empty, 0644), File, Socket, CharDevice, BlockDevice.

Invariant: `remove(root)` unmounts every mount below `root` (deepest first, lazily if busy)
before deleting it, so no tmpfs is left behind and no deletion reaches through a mount.
"""

from __future__ import annotations

import enum
import os
import shutil
import stat
from pathlib import Path

import structlog

from nodeagent.runtime import Mount, RuntimeError_
from nodeagent.runtime import mounts as runtime_mounts

log = structlog.get_logger(__name__)


class HostPathError(Exception):
    """A hostPath volume failed its type check (the kubelet's message)."""


class HostPathType(enum.Enum):
    ANY = ""
    DIRECTORY_OR_CREATE = "DirectoryOrCreate"
    DIRECTORY = "Directory"
    FILE_OR_CREATE = "FileOrCreate"
    FILE = "File"
    SOCKET = "Socket"
    CHAR_DEVICE = "CharDevice"
    BLOCK_DEVICE = "BlockDevice"


_CHECKS = {
    HostPathType.DIRECTORY: (stat.S_ISDIR, "a directory"),
    HostPathType.FILE: (stat.S_ISREG, "a file"),
    HostPathType.SOCKET: (stat.S_ISSOCK, "a socket file"),
    HostPathType.CHAR_DEVICE: (stat.S_ISCHR, "a character device"),
    HostPathType.BLOCK_DEVICE: (stat.S_ISBLK, "a block device"),
}


class VolumeHost:
    def __init__(self, *, tmpfs: bool) -> None:
        self.tmpfs = tmpfs

    def memory_dir(self, path: Path, *, size_bytes: int | None = None, mode: int = 0o755) -> Path:
        """`path` as a directory backed by memory (a tmpfs of at most `size_bytes`)."""
        path.mkdir(parents=True, exist_ok=True)
        if self.tmpfs and not runtime_mounts.is_mounted(path):
            options = [f"mode={mode:o}", "nosuid", "nodev"]
            if size_bytes:
                options.append(f"size={size_bytes}")
            try:
                runtime_mounts.perform(
                    [Mount(type="tmpfs", source="tmpfs", target="/", options=tuple(options))],
                    root=path,
                )
            except RuntimeError_ as exc:
                raise OSError(f"cannot mount a tmpfs at {path}: {exc}") from None
        else:
            os.chmod(path, mode)
        return path

    @staticmethod
    def disk_dir(path: Path, *, mode: int = 0o777) -> Path:
        """`path` as a plain directory of the node's disk (an emptyDir: writable by all)."""
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
        return path

    @staticmethod
    def own(path: Path, gid: int) -> None:
        """The pod's fsGroup owns `path`; a directory passes it on (setgid)."""
        os.chown(path, -1, gid)
        if path.is_dir():
            os.chmod(path, path.stat().st_mode | stat.S_ISGID | 0o070)

    @staticmethod
    def host_path(path: str, kind: str) -> Path:
        """The checked (or made) node path of a hostPath volume."""
        try:
            wanted = HostPathType(kind)
        except ValueError:
            raise HostPathError(f'hostPath type "{kind}" is not supported') from None
        target = Path(path)
        if wanted is HostPathType.DIRECTORY_OR_CREATE:
            if not target.exists():
                target.mkdir(parents=True, mode=0o755)
            wanted = HostPathType.DIRECTORY
        elif wanted is HostPathType.FILE_OR_CREATE:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(mode=0o644)
            wanted = HostPathType.FILE
        if wanted is HostPathType.ANY:
            return target
        check, what = _CHECKS[wanted]
        try:
            mode = target.stat().st_mode
        except OSError:
            mode = 0
        if not check(mode):
            raise HostPathError(f"hostPath type check failed: {path} is not {what}")
        return target

    @staticmethod
    def remove(root: Path) -> None:
        """Unmount everything below `root`, then delete it (idempotent)."""
        for target in sorted(mounts_below(root), key=lambda p: len(p.parts), reverse=True):
            try:
                runtime_mounts.unmount(target)
            except RuntimeError_ as exc:
                log.warning("volume.unmount_failed", path=str(target), error=str(exc))
        if mounts_below(root):
            log.warning("volume.still_mounted", path=str(root), note="left in place")
            return
        shutil.rmtree(root, ignore_errors=True)


def mounts_below(root: Path) -> list[Path]:
    """Mount points at or below `root` in this mount namespace."""
    base = str(root.absolute())
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
            for line in mountinfo:
                fields = line.split(" ", 5)
                if len(fields) < 5:
                    continue
                point = _unescape(fields[4])
                if point == base or point.startswith(base + "/"):
                    found.append(Path(point))
    except OSError:
        return []
    return found


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)

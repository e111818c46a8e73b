"""Performing and undoing the mounts that `Mount` descriptions describe (the side-effect edge).

The layer store only describes a container's rootfs (an overlay of read-only layers with a
private upper dir); this module is the one place in the runtime that mounts and unmounts (the
calls themselves are `pilothouse.libc`'s).

Invariants:
- a Mount's target is taken relative to the root directory given by the caller ("/" means
  the root itself), so a description can never mount over a host path;
- `unmount` is idempotent: a target that is not mounted (or no longer exists) is not an error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from nodeagent.runtime import Mount, RuntimeError_
from pilothouse import libc
from pilothouse.libc import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
)

log = structlog.get_logger(__name__)

_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "bind": MS_BIND,
    "rbind": MS_BIND | MS_REC,
}
_NO_OP_OPTIONS = {"rw", "suid", "dev", "exec"}


def target_path(mount: Mount, root: Path) -> Path:
    """Where `mount` lands under `root`; refuses targets that climb out of it."""
    rel = Path(mount.target.lstrip("/"))
    if ".." in rel.parts:
        raise RuntimeError_(f"mount target {mount.target!r} leaves the container root")
    return root / rel


def split_options(options: Sequence[str]) -> tuple[int, str]:
    """mount(2) flags and the filesystem data string for a description's options."""
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        elif opt not in _NO_OP_OPTIONS:
            data.append(opt)
    return flags, ",".join(data)


def perform(mounts: Sequence[Mount], *, root: Path) -> None:
    """Mount each description under `root`, in order; on failure, undo the ones made."""
    done: list[Path] = []
    try:
        for m in mounts:
            target = target_path(m, root)
            target.mkdir(parents=True, exist_ok=True)
            flags, data = split_options(m.options)
            _mount(m.source, target, m.type, flags, data)
            done.append(target)
            log.debug("mount.performed", type=m.type, target=str(target))
    except BaseException:
        for target in reversed(done):
            unmount(target)
        raise


def unmount(target: Path) -> None:
    """Unmount `target` (lazily if busy); nothing to do if it is not a mount point."""
    try:
        libc.umount2(target)
        return
    except OSError as exc:
        err = exc.errno
    if err in (errno.EINVAL, errno.ENOENT):
        return  # not mounted (or gone): already done
    if err == errno.EBUSY:
        try:
            libc.umount2(target, MNT_DETACH)
            return
        except OSError as exc:
            err = exc.errno
    raise RuntimeError_(f"unmounting {target}: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    """Whether `target` is a mount point in this process's mount namespace."""
    want = str(target)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                mount_point = line.split(" ", 5)[4]
                if _unescape(mount_point) == want:
                    return True
    except OSError:
        return False
    return False


def _mount(source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    try:
        libc.mount(
            source,
            target,
            fstype if fstype and not flags & MS_BIND else None,
            flags,
            data or None,
        )
    except OSError as exc:
        raise RuntimeError_(f"mounting {fstype} {source} at {target}: {exc.strerror}") from None
    if flags & MS_BIND and flags & MS_RDONLY:
        # A bind mount ignores MS_RDONLY until it is remounted.
        try:
            libc.mount(None, target, None, flags | MS_REMOUNT, None)
        except OSError as exc:
            unmount(target)
            raise RuntimeError_(f"making {target} read-only: {exc.strerror}") from None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape")

"""Performing and undoing the mounts that `Mount` descriptions describe (the side-effect edge).

The layer store only describes a container's rootfs (an overlay of read-only layers with a
private upper dir); this module is the one place that calls mount(2) and umount2(2).

Invariants:
- a Mount's target is taken relative to the root directory given by the caller ("/" means
  the root itself), so a description can never mount over a host path;
- `unmount` is idempotent: a target that is not mounted (or no longer exists) is not an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from nodeagent.runtime import Mount, RuntimeError_

log = structlog.get_logger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

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
    path = os.fsencode(str(target))
    if _libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return  # not mounted (or gone): already done
    if err == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno()
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
    rc = _libc.mount(
        os.fsencode(source),
        os.fsencode(str(target)),
        os.fsencode(fstype) if fstype and not flags & MS_BIND else None,
        flags,
        os.fsencode(data) if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise RuntimeError_(f"mounting {fstype} {source} at {target}: {os.strerror(err)}")
    if flags & MS_BIND and flags & MS_RDONLY:
        # A bind mount ignores MS_RDONLY until it is remounted.
        rc = _libc.mount(None, os.fsencode(str(target)), None, flags | MS_REMOUNT, None)
        if rc != 0:
            err = ctypes.get_errno()
            unmount(target)
            raise RuntimeError_(f"making {target} read-only: {os.strerror(err)}")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape")

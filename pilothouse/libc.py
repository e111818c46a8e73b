"""The Linux system calls Python's `os` module lacks, through ctypes: the one place that loads libc.

mount(2), umount2(2), setns(2) and statfs(2) are called by the node agent (rootfs and volume
mounts, pod network namespaces, probes from inside a pod's namespace) and by the local-cluster
tooling's forced clean-up; glibc's mallopt(3) by long-lived processes that bound their memory
(`pilothouse.process.footprint`). Each wrapper behaves like its `os` counterpart would: it
returns on success and raises `OSError` carrying the call's errno (and the path, where there is
one) on failure; callers translate that into their own errors.

Invariants: libc is loaded once, on first use (importing this module touches nothing); the
errno read after a call is the calling thread's own (`use_errno`), so these are safe from the
worker threads that enter namespaces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
M_ARENA_MAX = -8  # mallopt(3): how many malloc arenas threads may spread over


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return libc


def _fail(path: str | os.PathLike[str] | None = None) -> OSError:
    err = ctypes.get_errno()
    if path is None:
        return OSError(err, os.strerror(err))
    return OSError(err, os.strerror(err), os.fspath(path))


def _bytes(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int,
    data: str | None,
) -> None:
    """mount(2): `None` passes NULL (no source, no type or no data string)."""
    if _libc().mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        raise _fail(target)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2): `MNT_DETACH` in `flags` for a lazy unmount."""
    if _libc().umount2(os.fsencode(target), flags) != 0:
        raise _fail(target)


def setns(fd: int, nstype: int) -> None:
    """setns(2): move the calling thread (only it) into the namespace open as `fd`."""
    if _libc().setns(fd, nstype) != 0:
        raise _fail()


def filesystem_type(path: str | os.PathLike[str]) -> int:
    """statfs(2)'s `f_type` of the file system holding `path` (a magic number, NSFS_MAGIC…)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86-64
    if _libc().statfs(os.fsencode(path), buf) != 0:
        raise _fail(path)
    return int.from_bytes(buf.raw[:8], "little")


def mallopt(param: int, value: int) -> bool:
    """glibc's mallopt(3): True when the setting was taken (False where the C library lacks
    it, e.g. musl)."""
    function = getattr(_libc(), "mallopt", None)
    return function is not None and function(param, value) == 1

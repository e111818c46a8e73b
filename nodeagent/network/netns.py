"""Pod network namespaces: one persistent network namespace per pod, kept as a file.

A pod's network namespace must outlive every container of the pod (containers join it through
`ContainerSpec.netns_path`) and the agent itself (a restarted agent tears it down). Like
`ip netns add`, the namespace is kept alive by bind-mounting it onto a file, but the file lives
under a directory of ours (`<state-dir>/netns/<pod>`), so nodes sharing a machine never see
each other's pods.

Invariants:
- `create` leaves either a mounted namespace at the path or nothing (no empty file);
- `delete` is idempotent and also cleans a path whose mount is already gone (after a reboot,
  or when the agent ran in another mount namespace): the file is removed in every case;
- a path is a namespace only while `is_namespace(path)` says so; callers never guess from
  the file's existence.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import structlog

from pilothouse import libc

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class NetnsError(Exception):
    """A network namespace could not be created or removed; the message says why."""


def file_name(pod_id: str) -> str:
    """The file name for a pod's namespace: the pod id with unsafe characters replaced."""
    name = _UNSAFE.sub("_", pod_id)[:200]
    return name if name.strip(".") else "_" + name


async def create(path: str | os.PathLike[str]) -> str:
    """Create a new network namespace and pin it at `path`; return the path.

    An existing namespace at `path` is kept (idempotent: the pod's sandbox survives a retry).
    """
    target = Path(path)
    if is_namespace(target):
        return str(target)
    error = await pin(target, "--net")
    if error is not None:
        delete(target)
        raise NetnsError(f"cannot create network namespace at {target}: {error}")
    log.debug("netns.created", netns=str(target))
    return str(target)


async def pin(target: Path, flag: str) -> str | None:
    """Make a new namespace of the kind `unshare` calls `flag` ("--net", "--ipc") and pin it
    at `target` (made an empty file first): None once pinned, else unshare's error. The
    caller removes what a failure left."""
    make_mount_point(target)
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        f"{flag}={target}",
        "true",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return None if proc.returncode == 0 else err.decode().strip()


def delete(path: str | os.PathLike[str]) -> None:
    """Unpin and remove the namespace file at `path` (idempotent).

    The namespace itself goes away once no process is left in it.
    """
    target = Path(path)
    while _is_mount_point(target):
        try:
            libc.umount2(target, libc.MNT_DETACH)
        except OSError as exc:
            raise NetnsError(f"cannot unmount network namespace {target}: {exc.strerror}") from None
    try:
        target.unlink()
    except FileNotFoundError:
        return
    log.debug("netns.deleted", netns=str(target))


def make_mount_point(target: Path) -> None:
    """The empty file a namespace is bind-mounted on."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o444, exist_ok=True)


def is_namespace(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a pinned namespace (an nsfs file), of any kind."""
    try:
        return libc.filesystem_type(path) == libc.NSFS_MAGIC
    except OSError:
        return False


def _is_mount_point(path: Path) -> bool:
    wanted = str(path.absolute())
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split(" ", 5)
            if len(fields) > 4 and _unescape(fields[4]) == wanted:
                return True
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)

"""The namespaces a pod's containers share besides its network: IPC, and PID when asked.

- IPC: every container of a pod joins one IPC namespace (System V IPC and POSIX message
  queues, as in Kubernetes), pinned like a network namespace: bind-mounted on a file of the
  pod's directory (`ns/ipc`), so it outlives each container and the agent itself;
- PID (`shareProcessNamespace: true`): a PID namespace needs a live first process, so the pod
  gets a small holder (`pause`: reaps orphaned processes, as Kubernetes' pause container
  does) started in a new PID namespace pinned at `ns/pid`; its containers join it, see each
  other's processes and the holder as PID 1. The holder runs in its own session and survives
  agent restarts; its process group id is kept in `ns/pause.pid`.

`PodNamespaces.ensure()` is idempotent (a re-adopted pod keeps its namespaces) and answers the
paths to join, by type; `remove(pod_dir)` ends the holder and unpins both (idempotent, also
without the pod's spec). With `pin=False` (fake runtime, unit tests) nothing is made and every
container keeps namespaces of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import structlog

from nodeagent.network import netns
from pilothouse import libc

log = structlog.get_logger(__name__)

NS_DIR = "ns"
# PID 1 of a shared PID namespace: reaps every child, never exits on its own.
_PAUSE = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    signal.sigtimedwait({signal.SIGCHLD}, 60)
"""


class NamespaceError(Exception):
    """A pod namespace could not be made; the message says why."""


class PodNamespaces:
    def __init__(self, *, pod_dir: Path, share_pid: bool, pin: bool) -> None:
        self._dir = pod_dir / NS_DIR
        self._share_pid = share_pid
        self._pin = pin

    async def ensure(self) -> dict[str, str]:
        """The namespaces to join, {"ipc": path, "pid": path}; made when missing."""
        if not self._pin:
            return {}
        out = {"ipc": await _pin(self._dir / "ipc", "--ipc")}
        if self._share_pid:
            out["pid"] = await self._pause()
        return out

    async def _pause(self) -> str:
        path = self._dir / "pid"
        if netns.is_namespace(path) and _alive(_read_pid(self._dir / "pause.pid")):
            return str(path)
        _end_pause(self._dir)
        _unpin(path)
        netns.make_mount_point(path)
        proc = await asyncio.create_subprocess_exec(
            "unshare",
            f"--pid={path}",
            "--fork",
            sys.executable,
            "-c",
            _PAUSE,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        _record(self._dir / "pause.pid", proc.pid)
        for _ in range(100):  # the namespace is pinned once unshare has forked
            if netns.is_namespace(path):
                log.debug("pod.pid_namespace", path=str(path), pause=proc.pid)
                return str(path)
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        _end_pause(self._dir)
        raise NamespaceError(f"cannot start the shared PID namespace of the pod at {path}")

    @staticmethod
    def remove(pod_dir: Path) -> None:
        """End the pod's pause process and unpin its namespaces (idempotent)."""
        directory = pod_dir / NS_DIR
        if not directory.exists():
            return
        _end_pause(directory)
        for name in ("ipc", "pid"):
            _unpin(directory / name)


async def _pin(path: Path, flag: str) -> str:
    if netns.is_namespace(path):
        return str(path)
    error = await netns.pin(path, flag)
    if error is not None:
        _unpin(path)
        raise NamespaceError(f"cannot make the pod's namespace at {path}: {error}")
    return str(path)


def _record(path: Path, pid: int) -> None:
    path.write_text(str(pid))


def _unpin(path: Path) -> None:
    while netns.is_namespace(path):
        try:
            libc.umount2(path, libc.MNT_DETACH)
        except OSError as exc:
            log.warning("pod.namespace_unpin_failed", path=str(path), error=exc.strerror)
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"unshare" in cmdline.read()
    except OSError:
        return False


def _end_pause(directory: Path) -> None:
    record = directory / "pause.pid"
    pid = _read_pid(record)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    record.unlink(missing_ok=True)

"""conmon, the per-container monitor: starting it, finding it alive, and talking to it.

conmon is the parent of `runc create`: it holds the container's stdio, writes the CRI-format
log and records the exit code in the exit dir, so a container keeps running (and its exit
code is known) while no agent runs. It reports the container's pid, or runc's error, as one
JSON line on a sync pipe.

Invariants:
- a monitor is recognized by its pid file *and* its command line naming the container's
  uuid, so a reused pid is never taken for it; a zombie is not a live monitor;
- conmon runs in the bundle directory, where it writes its "oom" marker (never the agent's
  own working directory).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

from nodeagent.runtime import RuntimeError_, processes
from nodeagent.runtime.records import read_int

CREATE_TIMEOUT_S = 60.0
_REOPEN_LOGS_EVENT = b"2 0 0\n"
_RUNC_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


async def spawn(
    *,
    conmon: str,
    runc: str,
    runc_root: Path,
    container_id: str,
    container_uuid: str,
    bundle: Path,
    log_path: Path,
    log_size_max: int,
    exit_dir: Path,
    socket_dir: Path,
) -> int:
    """Start conmon, which runs `runc create`; return the container's pid or raise."""
    args = [
        conmon,
        "--api-version=1",
        f"--cid={container_id}",
        f"--cuuid={container_uuid}",
        f"--name={container_id}",
        f"--runtime={runc}",
        f"--runtime-arg=--root={runc_root}",
        f"--bundle={bundle}",
        f"--container-pidfile={bundle / 'container.pid'}",
        f"--conmon-pidfile={bundle / 'conmon.pid'}",
        f"--log-path=k8s-file:{log_path}",
        f"--log-size-max={log_size_max}",
        f"--exit-dir={exit_dir}",
        f"--persist-dir={bundle}",
        f"--socket-dir-path={socket_dir}",
        "--log-level=error",
    ]
    read_fd, write_fd = os.pipe()
    try:
        proc = processes.popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            env={"_OCI_SYNCPIPE": str(write_fd), "PATH": os.environ.get("PATH", "")},
            start_new_session=True,
            # conmon writes its "oom" marker into its working directory: keep it in the
            # bundle (where the runtime looks), never in the agent's own cwd.
            cwd=bundle,
        )
    finally:
        os.close(write_fd)
    try:
        await processes.exited(proc.pid)  # conmon forks its monitor and returns at once
        proc.wait()
        async with asyncio.timeout(CREATE_TIMEOUT_S):
            line = await processes.read_line(read_fd)
    finally:
        os.close(read_fd)
    if not line:
        raise RuntimeError_(
            f"the container monitor (conmon) exited with {proc.returncode} before runc "
            "created the container; run it by hand with --log-level=debug to see why"
        )
    msg = json.loads(line)
    pid = int(msg.get("data", -1))
    if pid <= 0:
        raise RuntimeError_(runc_message(str(msg.get("message", ""))))
    return pid


def live_pid(bundle: Path, container_uuid: str) -> int | None:
    """conmon's pid if it is alive and really the monitor of the container with that uuid."""
    pid = read_int(bundle / "conmon.pid")
    if not pid:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return None
    if f"--cuuid={container_uuid}".encode() not in cmdline:
        return None  # the pid was reused by another process
    return pid


def monitor_args(bundle: Path, container_id: str) -> dict[str, str]:
    """The `--name=value` arguments of the live monitor of `container_id` in `bundle` (from
    its command line; empty if there is none), for rebuilding lost records."""
    pid = read_int(bundle / "conmon.pid")
    if not pid:
        return {}
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return {}
    args = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            args[name] = value
    if args.get("cid") != container_id or args.get("bundle") != str(bundle):
        return {}  # the pid was reused by another process
    return args


def reopen_log(bundle: Path) -> None:
    """Ask the monitor to reopen its log file (after the agent moved it aside)."""
    try:
        fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # the monitor is exiting: there is nothing left to log
    try:
        os.write(fd, _REOPEN_LOGS_EVENT)
    finally:
        os.close(fd)


def runc_message(text: str) -> str:
    """runc's own words from its logrus output (`level=error msg="..."`), else the text."""
    msgs = [m.encode().decode("unicode_escape") for m in _RUNC_MSG.findall(text)]
    return "; ".join(msgs) if msgs else text.strip()

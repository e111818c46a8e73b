"""A RUN step in runc: an overlay rootfs over the parent layers, namespaces, a cgroup, cleaned up.

The builder's own small runc driver (the CLI may not use the node agent's runtime). One step:

1. an overlayfs is mounted at `<bundle>/rootfs`: the parent's layer dirs as lower dirs (read
   only, shared with every other build), and a fresh upper dir that receives every change;
2. `runc run` starts the command in new pid, mount, uts, ipc and cgroup namespaces, and in a new
   network namespace with only loopback unless the step asked for the host's network (then the
   host's /etc/resolv.conf is bound in read-only); with Docker's default capabilities,
   `noNewPrivileges`, Docker's masked and read-only /proc and /sys paths, a pids limit and its
   own cgroup `/pilothouse-build/<id>`, as a pod's container gets;
3. its output (stdout and stderr together) is streamed line by line to the caller, and the last
   lines kept for the error message;
4. always, whatever happened: the container is deleted, the overlay unmounted, the cgroup and
   the bundle removed. The upper dir (the step's changes) is left for the caller to turn into a
   layer; the caller owns and removes it.

Invariant: the step sees only its image's files: the rootfs is the overlay, nothing of the host
or the build context is mounted into it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import resource
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from pilothouse import libc
from pilothouse.oci.capabilities import DEFAULT_CAPABILITIES

log = structlog.get_logger(__name__)

CGROUP_PARENT = "/pilothouse-build"
CGROUP_ROOT = Path("/sys/fs/cgroup")
TAIL_LINES = 20
PIDS_LIMIT = 4096
HOSTNAME = "pilothouse-build"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mount points runc may create in the rootfs; dropped from the layer when they were made empty.
MOUNT_POINTS = ("proc", "dev", "sys", "etc/resolv.conf")
CAPABILITIES = list(DEFAULT_CAPABILITIES)  # Docker's default set, as pods get
MASKED = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass(frozen=True, slots=True)
class StepSpec:
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    host_network: bool = False


@dataclass(frozen=True, slots=True)
class StepResult:
    exit_code: int
    tail: tuple[str, ...]  # the last lines of output
    runtime_error: str = ""  # runc's own error, when the command could not be started


class RuncDriver:
    def __init__(
        self,
        *,
        run_dir: Path,
        runc_root: Path,
        runc: str = "runc",
        output: Callable[[str], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.runc_root = runc_root
        self.runc = shutil.which(runc) or runc
        self.output = output or (lambda line: None)

    async def run(self, spec: StepSpec, *, lowers: list[Path], upper: Path) -> StepResult:
        """Run `spec` on an overlay of `lowers` (top first) writing into `upper` (same fs as
        the lowers' parent); everything but `upper` is gone when this returns or raises."""
        cid = f"build-{uuid.uuid4().hex[:12]}"
        bundle = self.run_dir / cid
        rootfs = bundle / "rootfs"
        work = upper.with_name(upper.name + "-work")
        empty = bundle / "empty"
        for d in (rootfs, empty, work):
            d.mkdir(parents=True)
        mounted = False
        try:
            _mount_overlay(rootfs, lowers=lowers or [empty], upper=upper, work=work)
            mounted = True
            config = _config(spec, cid=cid)
            (bundle / "config.json").write_text(json.dumps(config))
            return await self._run(cid, bundle)
        finally:
            await self._delete(cid)
            if mounted:
                _unmount(rootfs)
            _remove_cgroup(f"{CGROUP_PARENT}/{cid}")
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    async def _run(self, cid: str, bundle: Path) -> StepResult:
        log_file = bundle / "runc.log"
        proc = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            str(self.runc_root),
            "--log",
            str(log_file),
            "--log-format",
            "json",
            "run",
            "--bundle",
            str(bundle),
            cid,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        assert proc.stdout is not None
        try:
            while raw := await proc.stdout.readline():
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                self.output(line)
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return StepResult(exit_code=code, tail=tuple(tail), runtime_error=_runc_error(log_file))

    async def _delete(self, cid: str) -> None:
        if not (self.runc_root / cid).exists():
            return
        proc = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            str(self.runc_root),
            "delete",
            "--force",
            cid,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()


def _mount_overlay(target: Path, *, lowers: list[Path], upper: Path, work: Path) -> None:
    """Mount the overlay with paths relative to the lower dirs' parent, so that many layers
    fit in the one page mount(2) takes for its options."""
    base = lowers[0].parent
    names = [os.path.relpath(p, base) for p in lowers]
    data = (
        f"lowerdir={':'.join(names)},upperdir={os.path.relpath(upper, base)},"
        f"workdir={os.path.relpath(work, base)}"
    )
    if len(data) >= 4000:
        raise OSError(f"too many layers for one overlay mount ({len(lowers)})")
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(base)
        libc.mount("overlay", target, "overlay", 0, data)
    finally:
        os.fchdir(here)
        os.close(here)


def _unmount(target: Path) -> None:
    try:
        libc.umount2(target)
    except OSError:
        with contextlib.suppress(OSError):
            libc.umount2(target, libc.MNT_DETACH)


def _remove_cgroup(path: str) -> None:
    rel = path.strip("/")
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        tops = [CGROUP_ROOT]
    elif CGROUP_ROOT.is_dir():
        tops = [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]
    else:
        tops = []
    for top in tops:
        with contextlib.suppress(OSError):
            (top / rel).rmdir()
        with contextlib.suppress(OSError):  # the shared parent, once no build step uses it
            (top / rel).parent.rmdir()


def _runc_error(log_file: Path) -> str:
    try:
        lines = log_file.read_text().splitlines()
    except OSError:
        return ""
    errors = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal"):
                errors.append(str(entry.get("msg", "")))
    return "; ".join(errors)


def _config(spec: StepSpec, *, cid: str) -> dict[str, Any]:
    env = list(spec.env)
    names = {e.split("=", 1)[0] for e in env}
    if "PATH" not in names:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in names:
        env.append(f"HOSTNAME={HOSTNAME}")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]
    if spec.host_network:
        if Path("/etc/resolv.conf").exists():
            mounts.append(
                {
                    "destination": "/etc/resolv.conf",
                    "type": "bind",
                    "source": os.path.realpath("/etc/resolv.conf"),
                    "options": ["rbind", "ro"],
                }
            )
    else:
        namespaces.append({"type": "network"})
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": list(spec.args),
            "env": env,
            "cwd": spec.cwd or "/",
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": HOSTNAME,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": f"{CGROUP_PARENT}/{cid}",
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "pids": {"limit": PIDS_LIMIT},
            },
            "namespaces": namespaces,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }

"""The real ContainerRuntime: OCI bundles run by runc, each under its own `conmon` monitor.

Layout under the state dir (everything a restarted agent needs to re-adopt its containers):

    <state>/runc/                      runc --root: runc's own state, apart from other users
    <state>/exits/<id>                 exit code, written by conmon when the container ends
    <state>/sockets/                   conmon's attach sockets (conmon needs the dir to exist)
    <state>/containers/<id>/           the OCI bundle, also conmon's working and persist dir:
        config.json                    the OCI config
        meta.json                      labels, log path, cgroup path, mounts made, created_at
        rootfs/                        the mount point of an assembled rootfs (overlay)
        started                        the start time (written once `runc start` succeeded)
        final.json                     the final state, kept once the container has stopped
        conmon.pid, container.pid      the monitor's and the container's pids
        exit, oom, ctl, winsz, attach  conmon's markers, control fifos and attach socket

Beside it: `bundles` (making a container's bundle and spawning its monitor), `conmon`
(starting and finding a container's monitor), `records` (the bundle's small files) and
`processes` (spawning and awaiting processes through pidfds).

Invariants:
- conmon, not the agent, is the parent of `runc create`: it holds the container's stdio,
  writes the CRI-format log and records the exit code in <state>/exits/<id>, so a container
  keeps running and its exit code is known while no agent runs;
- `state`, `list` and `wait` read files and /proc only (no runc process per call): the exit
  file wins, then a live monitor means created or running;
- `delete` is idempotent and leaves nothing: runc state, cgroups in every controller, the
  rootfs mount, the bundle and the exit file;
- an unreadable record never fails `list`: `meta.json` is rebuilt from its copies (config.json,
  runc's state) and `final.json` from the exit file, the bad file quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal as signals
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from nodeagent.runtime import (
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    RuntimeError_,
    Status,
    bundles,
    conmon,
    mounts,
    ocispec,
    processes,
    records,
    recovery,
)
from nodeagent.runtime import logs as cri_logs
from nodeagent.runtime.cgroups import Cgroups

log = structlog.get_logger(__name__)

LOG_SIZE_MAX_DEFAULT = 10 * 1024 * 1024


class RuncRuntime:
    def __init__(
        self,
        state_dir: Path,
        *,
        runc: str = "runc",
        conmon: str = "conmon",
        cgroup_parent: str = "/pilothouse",
        log_size_max: int = LOG_SIZE_MAX_DEFAULT,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.runc = shutil.which(runc) or runc
        self.conmon = shutil.which(conmon) or conmon
        self.log_size_max = log_size_max
        self.cgroups = Cgroups()
        self.settings = ocispec.NodeSettings.from_host(
            cgroup_parent=cgroup_parent, swap_limit=self.cgroups.swap_accounting()
        )
        self._runc_root = self.state_dir / "runc"
        self._exits = self.state_dir / "exits"
        self._sockets = self.state_dir / "sockets"
        self._containers = self.state_dir / "containers"
        for d in (self._runc_root, self._exits, self._sockets, self._containers):
            d.mkdir(parents=True, exist_ok=True)

    # -- the ContainerRuntime protocol ------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> ContainerState:
        cdir = self._containers / spec.id
        try:
            cdir.mkdir(mode=0o700)  # config.json holds the container's env: root's only
        except FileExistsError:
            raise RuntimeError_(f'container "{spec.id}" already exists') from None
        try:
            return await bundles.create(
                spec,
                cdir,
                settings=self.settings,
                conmon_binary=self.conmon,
                runc_binary=self.runc,
                runc_root=self._runc_root,
                exit_dir=self._exits,
                socket_dir=self._sockets,
                log_size_max=self.log_size_max,
            )
        except BaseException:
            await self.delete(spec.id)
            raise

    async def start(self, container_id: str) -> ContainerState:
        cdir = self._dir(container_id)
        await self._runc("start", container_id)
        (cdir / "started").write_text(datetime.now(UTC).isoformat())
        log.debug("container.started", container=container_id)
        return await self.state(container_id)

    async def kill(self, container_id: str, *, signal: int = 15) -> None:
        self._dir(container_id)
        if (await self.state(container_id)).status is Status.STOPPED:
            return
        try:
            await self._runc("kill", container_id, str(signal))
        except RuntimeError_:
            if (await self.state(container_id)).status is Status.STOPPED:
                return
            if not self._lost_to_runc(container_id) or not recovery.signal_without_runc(
                self._dir(container_id), monitor=self.monitor_pid(container_id), signal=signal
            ):
                raise

    async def wait(self, container_id: str) -> ContainerState:
        while True:
            state = await self.state(container_id)
            if state.status is Status.STOPPED:
                return state
            meta = self._meta(container_id)
            watched = self._monitor_pid(container_id, meta) or (state.pid or None)
            if watched is None:
                await asyncio.sleep(0.5)
                continue
            await processes.exited(watched)

    async def delete(self, container_id: str) -> None:
        cdir = self._containers / container_id
        if not cdir.exists() and not (self._runc_root / container_id).exists():
            return
        meta = self._meta_or_empty(container_id)
        monitor = self._monitor_pid(container_id, meta)
        try:
            await self._runc("delete", "--force", container_id)
        except RuntimeError_ as err:
            if "does not exist" in str(err):
                pass
            elif self._lost_to_runc(container_id):  # end it ourselves, drop runc's state
                recovery.signal_without_runc(cdir, monitor=monitor, signal=signals.SIGKILL)
                shutil.rmtree(self._runc_root / container_id, ignore_errors=True)
            else:
                raise
        if monitor is not None:
            try:
                async with asyncio.timeout(5.0):
                    await processes.exited(monitor)
            except TimeoutError:
                processes.signal_quietly(monitor, signals.SIGKILL)
        if meta.get("rootfs_mounted"):
            mounts.unmount(cdir / "rootfs")
        if cgroup_path := meta.get("cgroups_path"):
            self.cgroups.remove(cgroup_path)
        shutil.rmtree(cdir, ignore_errors=True)
        (self._exits / container_id).unlink(missing_ok=True)
        log.debug("container.deleted", container=container_id)

    async def state(self, container_id: str) -> ContainerState:
        try:
            return await self._state(container_id)
        except FileNotFoundError:
            # Its files went while we read them: a concurrent delete.
            raise ContainerNotFound(f'container "{container_id}" not found') from None

    async def _state(self, container_id: str) -> ContainerState:
        cdir = self._dir(container_id)
        final = records.read_final(cdir / "final.json")
        if final is not None:
            return final
        meta = self._meta(container_id)
        labels = meta.get("labels", {})
        started_at = records.read_time(cdir / "started")
        exit_file = self._exits / container_id
        if exit_file.exists():
            return self._finish(container_id, meta, started_at=started_at)
        monitor = self._monitor_pid(container_id, meta)
        pid = records.read_int(cdir / "container.pid")
        if monitor is not None:
            status = Status.RUNNING if started_at is not None else Status.CREATED
            return ContainerState(
                id=container_id, status=status, pid=pid, started_at=started_at, labels=labels
            )
        if exit_file.exists():  # the monitor wrote it and exited since we looked
            return self._finish(container_id, meta, started_at=started_at)
        if pid and processes.alive(pid) and await self._runc_status(container_id) == "running":
            # The monitor is gone but the container runs on: its exit code will be lost.
            return ContainerState(
                id=container_id,
                status=Status.RUNNING,
                pid=pid,
                started_at=started_at,
                labels=labels,
            )
        return self._finish(container_id, meta, started_at=started_at)

    async def list(self) -> list[ContainerState]:
        out = []
        for cdir in sorted(self._containers.iterdir()):
            try:
                out.append(await self.state(cdir.name))
            except ContainerNotFound:
                continue  # deleted while we looked
        return out

    async def version(self) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.runc,
            "--version",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        first = out.decode().splitlines()[0] if out else ""
        return "runc " + first.removeprefix("runc version ").strip()

    # -- beyond the protocol ----------------------------------------------------------------

    def bundle_dir(self, container_id: str) -> Path:
        return self._containers / container_id

    async def rotate_log(self, container_id: str) -> None:
        """Move the log to `<log>.1` (replacing an older one) and make the monitor reopen it."""
        meta = self._meta(container_id)
        log_path = Path(meta["log_path"])
        with contextlib.suppress(FileNotFoundError):
            os.replace(log_path, cri_logs.rotated_path(log_path))
        if self._monitor_pid(container_id, meta) is None:
            return
        conmon.reopen_log(self.bundle_dir(container_id))

    async def rotate_logs(self, *, max_bytes: int) -> list[str]:
        """Rotate every running container's log that grew past `max_bytes` (run periodically).

        The monitor's own `log_size_max` is the backstop while no agent runs: it truncates.
        """
        rotated = []
        for state in await self.list():
            if state.status is not Status.RUNNING:
                continue
            try:
                size = os.stat(self._meta(state.id)["log_path"]).st_size
            except (OSError, ContainerNotFound, KeyError):
                continue
            if size > max_bytes:
                await self.rotate_log(state.id)
                rotated.append(state.id)
        return rotated

    def log_path(self, container_id: str) -> Path:
        return Path(self._meta(container_id)["log_path"])

    def monitor_pid(self, container_id: str) -> int | None:
        """The live monitor (conmon) of a container, if any (for benchmarks and tests)."""
        return self._monitor_pid(container_id, self._meta_or_empty(container_id))

    # -- helpers ----------------------------------------------------------------------------

    def _finish(
        self, container_id: str, meta: dict[str, Any], *, started_at: datetime | None
    ) -> ContainerState:
        """The final state of a stopped container, recorded once so it outlives its cgroup."""
        cdir = self._containers / container_id
        exit_file = self._exits / container_id
        exit_code: int | None = None
        finished_at: datetime | None = None
        with contextlib.suppress(FileNotFoundError):  # a concurrent delete removed it
            finished_at = datetime.fromtimestamp(exit_file.stat().st_mtime, UTC)
            exit_code = records.read_int(exit_file, default=None)
        oom = (cdir / "oom").exists()
        if not oom and meta.get("cgroups_path"):
            oom = self.cgroups.oom_killed(meta["cgroups_path"])
        state = ContainerState(
            id=container_id,
            status=Status.STOPPED,
            exit_code=exit_code,
            oom_killed=oom,
            started_at=started_at,
            finished_at=finished_at,
            labels=meta.get("labels", {}),
        )
        if exit_code is not None:
            # A cache only: a concurrent delete may have removed the directory meanwhile.
            with contextlib.suppress(FileNotFoundError):
                records.write_json(cdir / "final.json", records.final_to_json(state))
        return state

    def _dir(self, container_id: str) -> Path:
        cdir = self._containers / container_id
        if not (cdir / "meta.json").exists():
            raise ContainerNotFound(f'container "{container_id}" not found')
        return cdir

    def _meta(self, container_id: str) -> dict[str, Any]:
        path = self._containers / container_id / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise ContainerNotFound(f'container "{container_id}" not found') from None
        except (OSError, ValueError) as exc:
            return self._recover_meta(container_id, error=exc)
        if not isinstance(meta, dict) or any(k not in meta for k in records.META_KEYS):
            return self._recover_meta(container_id, error="not a whole meta record")
        return meta

    def _recover_meta(self, container_id: str, *, error: object) -> dict[str, Any]:
        """Rebuild an unreadable meta.json (`recovery.rebuild_meta`; no await in between, so
        nothing else reads it meanwhile)."""
        return recovery.rebuild_meta(
            self._containers / container_id,
            container_id=container_id,
            runc_state=self._runc_root / container_id / "state.json",
            cgroups_path=ocispec.cgroups_path(container_id, self.settings),
            error=error,
        )

    def _meta_or_empty(self, container_id: str) -> dict[str, Any]:
        try:
            return self._meta(container_id)
        except (ContainerNotFound, ValueError):
            return {}

    def _lost_to_runc(self, container_id: str) -> bool:
        return recovery.runc_state_lost(self._runc_root / container_id / "state.json")

    def _monitor_pid(self, container_id: str, meta: dict[str, Any]) -> int | None:
        """conmon's pid if it is alive and really the monitor of this container."""
        return conmon.live_pid(self._containers / container_id, meta.get("uuid", ""))

    async def _runc_status(self, container_id: str) -> str:
        try:
            out = await self._runc("state", container_id)
        except RuntimeError_:
            return "unknown"
        try:
            return str(json.loads(out).get("status", "unknown"))
        except ValueError:
            return "unknown"

    async def _runc(self, *args: str) -> str:
        """Run a runc command that spawns nothing long-lived (start, kill, delete, state)."""
        proc = processes.popen(
            [self.runc, "--root", str(self._runc_root), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        with proc.stdout, proc.stderr:
            # runc's output is a few lines, far below a pipe's buffer: read it once it exited.
            await processes.exited(proc.pid)
            proc.wait()
            out, err = proc.stdout.read(), proc.stderr.read()
        if proc.returncode != 0:
            raise RuntimeError_(conmon.runc_message(err.decode(errors="replace")))
        return out.decode(errors="replace")

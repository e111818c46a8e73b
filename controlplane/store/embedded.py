"""EmbeddedEtcd: a single-member etcd that the control plane starts and supervises itself.

Role: `pilothouse controlplane` with no `--etcd` runs one of these under its data dir, so a
person gets a working store with no setup. It is a Runnable: `run()` keeps etcd alive
(restarting it with backoff when it dies) until cancelled, and then stops it.

Invariants:
- etcd listens on 127.0.0.1 only; its client and peer ports are chosen once (free ports at
  first start) and kept in `<data_dir>/etcd.json`, so a restarted etcd, or a restarted control
  plane, comes back at the same endpoint and existing clients reconnect to it.
- As a member of a cluster (`cluster`, from `--etcd-initial-cluster name=URL,…` and
  `--etcd-name`), etcd listens on the host of this member's peer URL in that list, with that
  peer port and the given client port (2379 by default), and starts with the whole list as its
  initial cluster (state `new`; on later starts etcd goes by its data dir and ignores the
  list). Every member is started the same way; the cluster has a leader (and this member
  counts as started) once a majority runs. Its certificates must name that host
  (`controlplane.store.tls.ensure(hosts=…)`), and all members' certificates must come from one
  etcd CA: copy `pki/` from the first member before starting the others.
- With `tls` (an `EtcdPki`, the default in `pilothouse controlplane`), both ports speak only
  TLS and require a client certificate from the etcd CA (`--client-cert-auth`,
  `--peer-client-cert-auth`), and the HTTP/JSON gateway is off: nothing on either port
  answers a process without the control plane's etcd client key, whether it speaks plain
  HTTP, TLS without a certificate, or gRPC. Without `tls` (`--insecure`, development only)
  both ports are plaintext on loopback, and any local user can read and write the store.
- The data dir is owned wholly by this class: etcd's data in `data/`, its output in `etcd.log`.
- The child dies with its parent (PR_SET_PDEATHSIG via `setpriv`, when present), so a killed
  control plane leaves no etcd behind holding the ports.
- History is auto-compacted in periodic mode with 1 h retention: a watch that was disconnected
  for less than an hour resumes without relisting, and the history never grows without bound.
  The backend quota is 2 GiB (etcd's own default, made explicit).
- The member's identity, cluster list, command line, client TLS and health check live in
  `controlplane.store.etcdmember`; this module supervises the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import uuid
from pathlib import Path

import structlog

from controlplane.store.etcdmember import (
    AUTO_COMPACTION_MODE,
    AUTO_COMPACTION_RETENTION,
    INSTALL_HINT,
    QUOTA_BACKEND_BYTES,
    Cluster,
    Member,
    client_ssl_context,
    etcd_command,
    free_port,
    is_healthy,
    url_host,
)
from controlplane.store.tls import EtcdPki

log = structlog.get_logger(__name__)

__all__ = [  # the member's parts, importable from here as before
    "AUTO_COMPACTION_MODE",
    "AUTO_COMPACTION_RETENTION",
    "INSTALL_HINT",
    "QUOTA_BACKEND_BYTES",
    "Cluster",
    "EmbeddedEtcd",
    "EtcdNotFound",
    "EtcdStartFailed",
    "Member",
    "client_ssl_context",
    "etcd_command",
    "free_port",
    "is_healthy",
]

_STOP_GRACE_SECONDS = 10.0
_LOG_ROTATE_BYTES = 20 * 1024**2


class EtcdNotFound(RuntimeError):
    """The `etcd` binary is not on PATH."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


class EtcdStartFailed(RuntimeError):
    """etcd exited, or never became healthy, while starting."""


class EmbeddedEtcd:
    """Starts, supervises and stops one local etcd child process under `data_dir`.

    `stop()` is a deliberate stop: a running `run()` then waits for `start()` instead of
    restarting it. `kill()` is a crash (SIGKILL): a running `run()` restarts etcd.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        client_port: int | None = None,
        peer_port: int | None = None,
        startup_timeout: float = 30.0,
        tls: EtcdPki | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.tls = tls
        self.cluster = cluster
        self._client_port = client_port
        self._peer_port = peer_port
        self._startup_timeout = startup_timeout
        self._member: Member | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._want_running = False
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()

    @property
    def log_path(self) -> Path:
        return self.data_dir / "etcd.log"

    @property
    def endpoint(self) -> str:
        """The client URL, e.g. "https://127.0.0.1:40123"; stable across restarts."""
        member = self._member or self._load_member()
        if member is None:
            raise RuntimeError("embedded etcd has not been started yet: no port is chosen")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{url_host(f'{member.host}:{member.client_port}')}"

    @property
    def ports(self) -> tuple[int, int]:
        """(client port, peer port); (0, 0) before the first start chose them."""
        member = self._member or self._load_member()
        return (member.client_port, member.peer_port) if member else (0, 0)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process and process.returncode is None else None

    async def start(self) -> str:
        """Start etcd if it is not running, wait until it is healthy, return its endpoint."""
        async with self._lock:
            self._want_running = True
            self._wanted.set()
            if self.pid is not None:
                return self.endpoint
            binary = shutil.which("etcd")
            if binary is None:
                raise EtcdNotFound()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            remembered = self._load_member()
            for attempt in range(3):
                member = self._choose_member(remembered)
                try:
                    await self._spawn(binary, member)
                except EtcdStartFailed as error:
                    # Ports we picked ourselves may have been taken meanwhile by somebody
                    # else: pick again. Ports a client may already know are never changed.
                    if remembered is None and self._client_port is None and attempt < 2:
                        log.warning("etcd.start_retry", error=str(error), attempt=attempt + 1)
                        continue
                    raise
                self._member = member
                self._save_member(member)
                log.info("etcd.started", endpoint=self.endpoint, pid=self.pid)
                return self.endpoint
            raise AssertionError("unreachable")

    async def stop(self) -> None:
        """Stop etcd deliberately: SIGTERM, then SIGKILL after a grace period; wait for it."""
        async with self._lock:
            self._want_running = False
            self._wanted.clear()
            await self._terminate()

    async def kill(self) -> None:
        """SIGKILL etcd, as a crash would; a running `run()` restarts it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    async def run(self) -> None:
        """Keep etcd running until cancelled; restart it with backoff when it dies."""
        try:
            await self.start()
            delay = 0.5
            while True:
                process = self._process
                if not self._want_running or process is None:
                    await self._wanted.wait()
                    await self.start()
                    continue
                started = asyncio.get_running_loop().time()
                code = await process.wait()
                if not self._want_running or process is not self._process:
                    continue
                log.warning("etcd.exited", exit_code=code, log=str(self.log_path))
                if asyncio.get_running_loop().time() - started > 30.0:
                    delay = 0.5
                while self._want_running:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    try:
                        await self.start()
                    except EtcdStartFailed as error:
                        log.warning("etcd.restart_failed", error=str(error), retry_in=delay)
                        continue
                    log.info("etcd.restarted", endpoint=self.endpoint, pid=self.pid)
                    break
        finally:
            await self.stop()

    async def _spawn(self, binary: str, member: Member) -> None:
        self._rotate_log()
        command = etcd_command(
            binary=binary,
            member=member,
            data_dir=self.data_dir / "data",
            tls=self.tls,
            cluster=self.cluster,
        )
        with self.log_path.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        self._process = process
        deadline = asyncio.get_running_loop().time() + self._startup_timeout
        while True:
            if process.returncode is not None:
                self._process = None
                raise EtcdStartFailed(
                    f"etcd exited with code {process.returncode} while starting on "
                    f"{member.host}:{member.client_port}; its log is {self.log_path}:\n"
                    f"{self._log_tail()}"
                )
            if await is_healthy(member.client_port, self.tls, member.host):
                return
            if asyncio.get_running_loop().time() > deadline:
                await self._terminate()
                raise EtcdStartFailed(
                    f"etcd did not become healthy within {self._startup_timeout:.0f} s on "
                    f"{member.host}:{member.client_port}; its log is {self.log_path}:\n"
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await process.wait()

    async def _terminate(self) -> None:
        process = self._process
        self._process = None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_GRACE_SECONDS):
                await process.wait()
        except TimeoutError:
            log.warning("etcd.kill", pid=process.pid, reason="did not stop on SIGTERM")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("etcd.stopped", pid=process.pid, exit_code=process.returncode)

    def _choose_member(self, remembered: Member | None) -> Member:
        if self.cluster is not None:
            # A cluster member's name, host and ports are the cluster's, not ours to pick.
            return Member(
                name=self.cluster.name,
                client_port=self._client_port or (remembered.client_port if remembered else 2379),
                peer_port=self.cluster.peer_port,
                host=self.cluster.host,
            )
        if remembered is not None and self._client_port in (None, remembered.client_port):
            return remembered
        return Member(
            name=remembered.name if remembered else f"pilothouse-{uuid.uuid4().hex[:12]}",
            client_port=self._client_port or free_port(),
            peer_port=self._peer_port or free_port(),
        )

    def _load_member(self) -> Member | None:
        try:
            saved = json.loads((self.data_dir / "etcd.json").read_text())
            return Member(
                name=saved["name"],
                client_port=int(saved["client_port"]),
                peer_port=int(saved["peer_port"]),
                host=str(saved.get("host", "127.0.0.1")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_member(self, member: Member) -> None:
        path = self.data_dir / "etcd.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {
                    "name": member.name,
                    "client_port": member.client_port,
                    "peer_port": member.peer_port,
                    "host": member.host,
                }
            )
        )
        os.replace(temporary, path)

    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

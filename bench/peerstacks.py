"""Docker Swarm and Podman (Debian's) as bench/peers.py drives them, and how a stack's memory
is read: each peer runs from private directories (data, sockets, storage) under the bench's
work dir, on the busybox rootfs imported as `IMAGE`.

Invariants: a peer is started only when its programs are installed (else a note says why not);
whatever `peers` started is stopped on the way out: dockerd (and the containerd it started) by
its PID after its swarm is left and its containers and bridge removed, Podman's containers
removed; mounts left under the work dir are unmounted. Nothing listens beyond this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.agents import SLEEPER
from tests.fixtures.runtime import make_busybox_rootfs

IMAGE = "localhost/bench-busybox:1"
COMMAND = ["sh", "-c", SLEEPER]


# --- memory ----------------------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory(pids: list[int]) -> dict[str, object]:
    """RSS and PSS (MiB) of each process and in total."""
    each, rss_total, pss_total = [], 0.0, 0.0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = {
            line.split(":")[0]: int(line.split()[1]) / 1024
            for line in rollup.splitlines()[1:]
            if line.split()[-1] == "kB"
        }
        words = [a.decode(errors="replace") for a in argv if a]
        name = " ".join(w for w in words[:4] if not w.startswith("/tmp"))[:70]
        each.append(
            {
                "pid": pid,
                "process": name,
                "rss": round(fields["Rss"], 1),
                "pss": round(fields["Pss"], 1),
            }
        )
        rss_total += fields["Rss"]
        pss_total += fields["Pss"]
    return {"rss_mib": round(rss_total, 1), "pss_mib": round(pss_total, 1), "processes": each}


def unmount_below(directory: Path) -> None:
    """Lazily unmount whatever a peer left mounted under `directory` (overlays, shm)."""
    for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
        if mount.split()[1].startswith(str(directory)):
            subprocess.run(["umount", "-l", mount.split()[1]], check=False)


# --- the peers ------------------------------------------------------------------------------


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class Swarm:
    name = "swarm"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.socket = work / "docker.sock"
        self.docker = ["docker", "-H", f"unix://{self.socket}"]
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        if not shutil.which("dockerd") or not Path("/usr/bin/docker").exists():
            return "dockerd is not installed (apt-get install docker.io)"
        return None

    def api(self, path: str) -> object:
        connection = _UnixHTTP(str(self.socket))
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def start(self, rootfs_tar: Path) -> None:
        self.docker[0] = "/usr/bin/docker"  # Debian's client, not one elsewhere on PATH
        log = (self.work / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.work / "data"),
                "--exec-root",
                str(self.work / "exec"),
                "--host",
                f"unix://{self.socket}",
                "--pidfile",
                str(self.work / "dockerd.pid"),
                "--iptables=false",
                "--bridge=none",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run([*self.docker, "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dockerd did not start (log: {self.work / 'dockerd.log'})")
            time.sleep(0.2)
        run = [*self.docker, "swarm", "init", "--advertise-addr", "127.0.0.1"]
        subprocess.run(run, check=True, capture_output=True)
        subprocess.run(
            [*self.docker, "import", str(rootfs_tar), IMAGE], check=True, capture_output=True
        )

    def pids(self) -> list[int]:
        return descendants(self.process.pid) if self.process else []

    async def start_replicas(self, name: str, replicas: int) -> float:
        started = time.time()
        typed = await asyncio.create_subprocess_exec(
            *self.docker,
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--replicas",
            str(replicas),
            IMAGE,
            *COMMAND,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await typed.communicate()
        if typed.returncode != 0:
            raise SystemExit(f"docker service create failed: {err.decode()[-400:]}")
        query = urllib.parse.quote(json.dumps({"service": [name], "desired-state": ["running"]}))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            tasks = await asyncio.to_thread(self.api, f"/tasks?filters={query}")
            if sum(t["Status"]["State"] == "running" for t in tasks) >= replicas:  # type: ignore[attr-defined, index]
                return time.time() - started
            await asyncio.sleep(0.02)
        raise SystemExit(f"swarm: {replicas} tasks never all running")

    async def remove(self, name: str) -> None:
        await asyncio.to_thread(
            subprocess.run, [*self.docker, "service", "rm", name], capture_output=True
        )
        deadline = time.monotonic() + 120
        while await asyncio.to_thread(self.api, "/containers/json?all=1"):
            if time.monotonic() > deadline:
                raise SystemExit("swarm: containers left after service rm")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        subprocess.run([*self.docker, "swarm", "leave", "--force"], capture_output=True)
        subprocess.run(
            [*self.docker, "rm", "-f", *self._containers()], capture_output=True, check=False
        )
        # The bridge `swarm init` made in this namespace outlives the swarm: remove it.
        subprocess.run([*self.docker, "network", "rm", "docker_gwbridge"], capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)  # dockerd and the containerd it started
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        unmount_below(self.work)

    def _containers(self) -> list[str]:
        listed = subprocess.run([*self.docker, "ps", "-aq"], capture_output=True, text=True)
        return listed.stdout.split()


class Podman:
    name = "podman"

    def __init__(self, work: Path) -> None:
        self.work = work
        conf = work / "containers.conf"
        # The default nofile ulimit (1048576) is above this machine's hard limit: keep the host's.
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.podman = ["podman", "--root", str(work / "root"), "--runroot", str(work / "run")]

    @staticmethod
    def missing() -> str | None:
        return (
            None if shutil.which("podman") else "podman is not installed (apt-get install podman)"
        )

    def start(self, rootfs_tar: Path) -> None:
        subprocess.run(
            [*self.podman, "import", str(rootfs_tar), IMAGE],
            check=True,
            capture_output=True,
            env=self.env,
        )

    def pids(self) -> list[int]:
        return []  # no daemon

    async def start_replicas(self, name: str, replicas: int) -> float:
        run = " ".join([*self.podman, "run", "-d", "--network", "none", "--name"])
        quoted = " ".join(json.dumps(w) for w in COMMAND)
        line = (
            f"for i in $(seq {replicas}); do {run} {name}-$i {IMAGE} {quoted} >/dev/null & done;"
            " wait"
        )
        started = time.time()
        typed = await asyncio.create_subprocess_shell(line, env=self.env)
        await typed.wait()
        listed = await asyncio.create_subprocess_exec(
            *self.podman,
            "ps",
            "-q",
            "--filter",
            f"name={name}-",
            env=self.env,
            stdout=subprocess.PIPE,
        )
        out, _ = await listed.communicate()
        elapsed = time.time() - started
        if len(out.split()) != replicas:
            raise SystemExit(f"podman: {len(out.split())}/{replicas} containers running")
        return elapsed

    async def remove(self, name: str) -> None:
        await asyncio.to_thread(
            subprocess.run,
            [*self.podman, "rm", "-fa", "-t", "0"],
            capture_output=True,
            env=self.env,
        )

    def stop(self) -> None:
        subprocess.run([*self.podman, "rm", "-fa", "-t", "0"], capture_output=True, env=self.env)
        unmount_below(self.work)


@contextlib.contextmanager
def peers(wanted: list[str], work: Path, notes: dict[str, str]) -> Iterator[list[object]]:
    """The installed peers among `wanted`, started; stopped (by PID) on the way out."""
    tar = work / "rootfs.tar"
    rootfs = make_busybox_rootfs(work / "rootfs")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    started: list[object] = []
    try:
        for kind in (Swarm, Podman):
            if kind.name not in wanted:
                continue
            if reason := kind.missing():
                notes[kind.name] = f"not measured: {reason}"
                continue
            (work / kind.name).mkdir()
            stack = kind(work / kind.name)
            try:
                stack.start(tar)
            except (RuntimeError, subprocess.CalledProcessError) as error:
                notes[kind.name] = f"not measured: could not start ({error})"
                stack.stop()
                continue
            started.append(stack)
        yield started
    finally:
        for stack in started:
            stack.stop()  # type: ignore[attr-defined]

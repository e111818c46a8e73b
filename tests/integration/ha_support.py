"""A control plane of three members on loopback, as `pilothouse up --control-planes 3
--network host` runs them (`pilothouse.cli.cluster.controlplanes`, under the same supervisor,
so a member killed with SIGKILL is started again as systemd would), for the HA tests.

`HaControlPlane` knows each member's pid and its etcd's, asks any member who leads, and
freezes, thaws and kills members; `stop()` ends every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from pilothouse import credentials
from pilothouse.cli.cluster import controlplanes, hosts
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.supervisor import Supervisor
from pilothouse.client import Client
from pilothouse.v1 import controlplane_pb2 as api


class HaControlPlane:
    def __init__(self, root: Path, *, count: int = 3, flags: Sequence[str] = ()) -> None:
        self.layout = Layout.at(root)
        self.supervisor = Supervisor(self.layout.pids)
        placed = hosts.SharedNetwork().create_controlplanes("ha", controlplanes.names(count))
        self.planes = controlplanes.ControlPlanes(
            self.layout,
            self.supervisor,
            controlplanes.plan(self.layout, placed),
            registry="",
            insecure=False,
            flags=flags,
        )
        self.tls: credentials.TlsMaterial | None = None
        self.frozen: set[int] = set()

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.planes.members]

    @property
    def addresses(self) -> str:
        return self.planes.addresses

    def address(self, name: str) -> str:
        return next(m.listen for m in self.planes.members if m.name == name)

    def log(self, name: str) -> Path:
        return self.layout.log(name)

    async def start(self) -> None:
        await self.planes.start()
        self.tls = self.planes.credentials().admin

    def client(self, *names: str, timeout: float = 5.0) -> Client:
        """A client of these members (all of them by default), as the admin."""
        assert self.tls is not None, "start() first"
        server = ",".join(self.address(n) for n in names) if names else self.addresses
        return Client(
            server,
            timeout=timeout,
            credentials=self.tls.channel_credentials(),
            options=credentials.channel_options(),
        )

    async def status(self, *names: str) -> api.ListControlPlanesResponse:
        async with self.client(*names, timeout=2.0) as client:
            return await client.controlplanes()

    async def leader(self, *names: str) -> str | None:
        try:
            answer = await self.status(*names)
        except Exception:
            return None
        return next((m.name for m in answer.members if m.leader and m.alive), None)

    async def wait_leader(
        self, *, other_than: str | None = None, within: float = 15.0, via: Sequence[str] = ()
    ) -> tuple[str, float]:
        """The leader once there is one (not `other_than`), and how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            leader = await self.leader(*via)
            if leader is not None and leader != other_than:
                return leader, time.monotonic() - started
            await asyncio.sleep(0.05)
        raise AssertionError(f"no leader (other than {other_than}) within {within} s")

    def pid(self, name: str) -> int:
        pid = self.supervisor.pid(name)
        assert pid is not None, f"control plane {name} does not run"
        return pid

    def etcd_pid(self, name: str) -> int:
        parent = self.pid(name)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == parent and (entry / "comm").read_text().strip() == "etcd":
                    return int(entry.name)
        raise AssertionError(f"control plane {name} runs no etcd")

    def freeze(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        self.frozen.add(pid)

    def thaw(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        self.frozen.discard(pid)

    async def stop(self) -> None:
        for pid in list(self.frozen):
            self.thaw(pid)
        await self.planes.stop()

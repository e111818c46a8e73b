"""A lab: N machines booted from the cached image on a bridge inside a network namespace.

    with Lab.create(directory, machines=3) as lab:   # image built or reused, accel probed
        lab.boot_all()                                # in parallel; returns once SSH answers
        lab.command(["pilothouse", "node", "add", …])  # argv run inside the namespace
        lab.machines[0].power_off(); lab.boot(lab.machines[0])

Everything a lab makes lives under its directory (overlays, seeds, serial logs, keys,
known_hosts) or in its namespace ("phvm-<lab>"): `close()` kills the lab's QEMU processes by
their PIDs, deletes the namespace and, unless `keep`, the directory. It runs on the way out of
the `with` whatever happened inside, and `sweep()` removes the namespaces a crashed run left.

The lab's SSH client key is `key.private`; `known_hosts` holds every machine's host key from
the start (the lab made them), so `node add` verifies hosts strictly, no trust on first use.
The machines have no internet: each comes with the busybox test image (`busybox:stable`, as
`up`'s registry serves it) in the agent's import directory, which an agent loads when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from pilothouse.cli.vm import accel, image, seed
from pilothouse.cli.vm.image import Image, Recipe
from pilothouse.cli.vm.machine import DEFAULT_MEMORY_MIB, Machine, MachineError, MachineSpec
from pilothouse.cli.vm.network import LabNetwork, leftover_labs
from pilothouse.oci.testimage import build_test_image

log = structlog.get_logger(__name__)

SSH_WAIT_SECONDS = 900.0  # emulated machines take minutes, many more on a loaded machine
# Where an agent finds image archives to load when it starts (nodeagent.images).
IMPORTED_IMAGE = "var/lib/pilothouse/agent/images/import/busybox.tar"


@dataclass(frozen=True, slots=True)
class Booted:
    """How long a machine took from QEMU's start until its sshd answered."""

    machine: str
    seconds: float


class Lab:
    """See the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        image: Image,
        accel_mode: str,
        name: str | None = None,
        memory_mib: int = DEFAULT_MEMORY_MIB,
        keep: bool = False,
    ) -> None:
        self.directory = directory
        self.image = image
        self.accel = accel_mode
        self.name = name or secrets.token_hex(3)
        self.network = LabNetwork(self.name)
        self.memory_mib = memory_mib
        self.keep = keep
        self.machines: list[Machine] = []
        self.keys = directory / "keys"
        self.keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = seed.client_key(self.keys)
        self.known_hosts = directory / "known_hosts"
        self.known_hosts.touch(mode=0o600)
        archive = build_test_image(directory / "busybox.tar")
        self._seed_files = {IMPORTED_IMAGE: archive.read_bytes()}

    # -- making ----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def create(
        cls,
        directory: Path,
        *,
        machines: int,
        recipe: Recipe | None = None,
        memory_mib: int = DEFAULT_MEMORY_MIB,
        keep: bool = False,
    ) -> Iterator[Lab]:
        """A lab with `machines` machines defined (not booted), removed again on the way out."""
        built = image.ensure(recipe)
        lab = cls(
            directory,
            image=built,
            accel_mode=accel.choose(built, cache=image.cache_dir()),
            memory_mib=memory_mib,
            keep=keep,
        )
        try:
            lab.network.create()
            for _ in range(machines):
                lab.add_machine()
            yield lab
        finally:
            lab.close()

    def add_machine(self, *, kernel_args: Sequence[str] = ()) -> Machine:
        """Define one more machine ("vm-<i>") with its key, seed and tap (not booted)."""
        index = len(self.machines) + 1
        name = f"vm-{index}"
        address = self.network.address(index)
        host = seed.host_key(self.keys, name)
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        seed_file = seed.write_seed(
            directory / "seed.tar",
            host=host,
            authorized_keys=self.key.public + "\n",
            extra=self._seed_files,
        )
        spec = MachineSpec(
            name=name,
            address=address,
            gateway=self.network.gateway,
            prefix_length=self.network.subnet.prefixlen,
            mac=_mac(self.name, name),
            tap=self.network.add_tap(name),
            memory_mib=self.memory_mib,
            kernel_args=tuple(kernel_args),
        )
        machine = Machine(
            spec,
            image=self.image,
            directory=directory,
            seed=seed_file,
            accel=self.accel,
            enter_prefix=self.network.enter_prefix(),
        )
        self.machines.append(machine)
        with self.known_hosts.open("a") as hosts:
            hosts.write(seed.known_hosts_line(address, host) + "\n")
        return machine

    # -- booting ---------------------------------------------------------------------------

    async def boot(self, machine: Machine, *, within: float = SSH_WAIT_SECONDS) -> Booted:
        """Boot `machine` (again) and wait until its sshd answers; how long that took."""
        machine.boot()
        await self.wait_ssh(machine, within=within)
        seconds = round(time.monotonic() - machine.booted_at, 1)
        log.info("vm.ssh_up", machine=machine.name, seconds=seconds)
        return Booted(machine.name, seconds)

    async def boot_all(self, machines: Sequence[Machine] | None = None) -> list[Booted]:
        """Boot every machine (or those given) at once; each one's time to SSH."""
        chosen = list(machines if machines is not None else self.machines)
        return list(await asyncio.gather(*(self.boot(m) for m in chosen)))

    async def wait_ssh(self, machine: Machine, *, within: float = SSH_WAIT_SECONDS) -> None:
        """Until `machine`'s sshd sends its banner (MachineError after `within` s or if QEMU
        exits)."""
        deadline = time.monotonic() + within
        while True:
            if why := machine.exited():
                raise MachineError(f"{machine.name} stopped: {why}\n{machine.serial_tail()}")
            if await asyncio.to_thread(self._banner, machine.address):
                return
            if time.monotonic() > deadline:
                raise MachineError(
                    f"{machine.name} ({machine.address}) did not answer SSH within "
                    f"{within:.0f} s; its console:\n{machine.serial_tail()}"
                )
            await asyncio.sleep(1.0)

    async def wait_ssh_down(self, machine: Machine, *, within: float = 120.0) -> None:
        """Until `machine`'s sshd no longer answers (it is going down for a reboot)."""
        deadline = time.monotonic() + within
        while await asyncio.to_thread(self._banner, machine.address):
            if time.monotonic() > deadline:
                raise MachineError(f"{machine.name} still answers SSH after {within:.0f} s")
            await asyncio.sleep(0.5)

    def _banner(self, address: str) -> bool:
        try:
            with self.network.connect(address, 22, timeout=3.0) as sock:
                sock.settimeout(5.0)
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    # -- using -----------------------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the lab's network namespace, where the machines' addresses are."""
        return [*self.network.enter_prefix(), *argv]

    def machine(self, name: str) -> Machine:
        return next(m for m in self.machines if m.name == name)

    def memory_rss_mib(self) -> dict[str, float]:
        return {m.name: round(m.memory_rss_mib(), 1) for m in self.machines if m.running}

    # -- removing --------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every machine of the lab (by PID), delete its namespace and its directory."""
        for machine in self.machines:
            machine.power_off()
        self.network.destroy()
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        log.info("vm.lab_removed", lab=self.name)


def sweep() -> list[str]:
    """Delete the namespaces of labs a crashed run left that hold no process any more (their
    QEMU processes died with the run: see `machine`); the names removed."""
    removed = []
    for name in leftover_labs():
        network = LabNetwork(name)
        if not network.pids():
            network.destroy()
            removed.append(name)
    return removed


def _mac(lab: str, machine: str) -> str:
    digest = hashlib.sha256(f"{lab}/{machine}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])

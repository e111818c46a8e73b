"""One virtual machine: a QEMU process booting the image through a copy-on-write overlay.

A machine has a name, an address on the lab's bridge, a MAC, an overlay disk, a seed and a
serial log, all under its directory. `boot()` starts QEMU (in the lab's network namespace, on
its tap); `power_off()` kills that process at once, as pulling the plug would; `boot()` again
starts the same machine from the same disk, so what was written before the power-off (and
reached the disk) is still there. A clean reboot from inside (`systemctl reboot`) keeps the
process: QEMU resets the machine and boots the same kernel again.

Invariants: the overlay is the only disk written; a machine's process is known by its PID and
only that PID is ever killed; `power_off` waits until the process is gone; QEMU gets SIGKILL
from the kernel when the thread that booted it ends (PR_SET_PDEATHSIG), so call `boot` from a
thread that lives as long as the lab (the event loop's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from pilothouse.cli.vm import guest
from pilothouse.cli.vm.image import Image

log = structlog.get_logger(__name__)

DEFAULT_MEMORY_MIB = 512
TCG_TRANSLATION_CACHE_MIB = 128  # QEMU's default is 1 GiB per machine: too much for a lab
TCG_CPU = "max"  # every feature QEMU's emulation has


class MachineError(RuntimeError):
    """A machine could not be started; the message says why, with its serial log's tail."""


@dataclass(frozen=True, slots=True)
class MachineSpec:
    name: str
    address: str
    gateway: str
    prefix_length: int
    mac: str
    tap: str
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = 1
    kernel_args: tuple[str, ...] = ()  # extra kernel arguments, e.g. cgroup_disable=memory


def kernel_command_line(spec: MachineSpec) -> str:
    """Root on the virtio disk, the console on the serial port, the address and host name.
    `no_timer_check`: an emulated CPU on a loaded host can fail the kernel's IO-APIC timer
    check and panic at boot ("IO-APIC + timer doesn't work!", seen at load ~4 on 2 cores);
    `panic=5`: a guest that panics anyway reboots and boots again instead of hanging."""
    netmask = str(_netmask(spec.prefix_length))
    words = [
        "root=/dev/vda",
        "rw",
        "console=ttyS0",
        "no_timer_check",
        "panic=5",
        "net.ifnames=0",
        f"ip={spec.address}::{spec.gateway}:{netmask}:{spec.name}:eth0:off",
        f"systemd.hostname={spec.name}",
        "quiet",
        "systemd.show_status=false",
        *spec.kernel_args,
    ]
    return " ".join(words)


def _netmask(prefix: int) -> str:
    bits = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return ".".join(str((bits >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def qemu_argv(
    spec: MachineSpec, *, image: Image, overlay: Path, seed: Path, serial: Path, accel: str
) -> list[str]:
    """The QEMU command line for `spec` (KVM or TCG by `accel`)."""
    if accel == "kvm":
        accelerator = ["-accel", "kvm", "-cpu", "host"]
    else:
        accelerator = ["-accel", f"tcg,tb-size={TCG_TRANSLATION_CACHE_MIB}", "-cpu", TCG_CPU]
    return [
        "qemu-system-x86_64",
        "-name", spec.name,
        "-machine", "q35",
        *accelerator,
        "-m", str(spec.memory_mib),
        "-smp", str(spec.cpus),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", f"file:{serial}",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", kernel_command_line(spec),
        "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac}",
        "-device", "virtio-rng-pci",
        "-fw_cfg", f"name={guest.SEED_FW_CFG},file={seed}",
    ]  # fmt: skip


class Machine:
    """A QEMU machine of a lab (see the module docstring)."""

    def __init__(
        self,
        spec: MachineSpec,
        *,
        image: Image,
        directory: Path,
        seed: Path,
        accel: str,
        enter_prefix: list[str],
    ) -> None:
        self.spec = spec
        self.image = image
        self.directory = directory
        self.seed = seed
        self.accel = accel
        self._enter = enter_prefix
        self.overlay = directory / "disk.qcow2"
        self.serial = directory / "serial.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.booted_at = 0.0  # time.monotonic() of the last boot

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def boot(self) -> None:
        """Start the machine (its overlay made on the first boot). No-op while it runs."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.overlay.exists():
            done = subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                 "-b", str(self.image.disk), str(self.overlay)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if done.returncode != 0:
                raise MachineError(f"{self.name}: qemu-img create: {done.stderr.strip()}")
        argv = qemu_argv(
            self.spec,
            image=self.image,
            overlay=self.overlay,
            seed=self.seed,
            serial=self.serial,
            accel=self.accel,
        )
        with (self.directory / "qemu.log").open("ab") as output:
            # setpriv and nsenter exec (no fork), so this PID is QEMU's own; QEMU is killed
            # when the thread that started it ends (a crashed test leaves no machine behind).
            self.process = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", *self._enter, *argv],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        self.booted_at = time.monotonic()
        log.info("vm.booting", machine=self.name, pid=self.process.pid, accel=self.accel)

    def power_off(self) -> None:
        """Kill the QEMU process at once (a pulled plug) and wait until it is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        log.info("vm.powered_off", machine=self.name, pid=process.pid)

    def exited(self) -> str | None:
        """Why the machine stopped on its own (QEMU exited), or None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        log_text = (self.directory / "qemu.log").read_text(errors="replace").strip()
        return f"QEMU exited with {self.process.returncode}: {log_text[-500:]}"

    def serial_tail(self, lines: int = 20) -> str:
        if not self.serial.exists():
            return "(no serial output)"
        return "\n".join(self.serial.read_text(errors="replace").splitlines()[-lines:])

    def serial_has(self, text: str) -> bool:
        return self.serial.exists() and text in self.serial.read_text(errors="replace")

    def memory_rss_mib(self) -> float:
        """The QEMU process's resident memory, MiB (0 when it is not running)."""
        if not self.running or self.process is None:
            return 0.0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

"""A lab's network: a network namespace holding a bridge and one tap per machine.

    namespace "phvm-<lab>":  br0 10.77.0.1/24  <- the control plane, the registry, the CLI
                               |  tap "t-<machine>" per machine (QEMU's virtio NIC)
    machine i:               eth0 10.77.0.(10+i)/24 (the kernel's ip= argument)

Guest addresses exist only inside the namespace: nothing is routed to or from the machine's
own network, so a lab can neither reach nor disturb anything else. Whatever talks to the guests
runs in the namespace: processes through `enter_prefix()` (nsenter, the machine's mount
namespace kept), and this process through `connect()`, which makes a socket inside it.

Invariants: every name derives from the lab's name, so `destroy(lab)` finds everything with no
state of ours; `destroy` is idempotent and kills nothing (machines are killed by PID first).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import threading
from pathlib import Path

from pilothouse import libc

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
DEFAULT_SUBNET = "10.77.0.0/24"
FIRST_MACHINE = 10  # machine i (1-based) gets host number 10 + i
_LAB_NAME = re.compile(r"^[a-z0-9]{1,12}$")


class LabNetworkError(RuntimeError):
    """A lab's network could not be made; the message has the command and its error."""


def _run(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise LabNetworkError(f"{' '.join(argv)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


class LabNetwork:
    """The namespace, bridge and taps of one lab."""

    def __init__(self, lab: str, *, subnet: str = DEFAULT_SUBNET) -> None:
        if not _LAB_NAME.match(lab):
            raise ValueError(f"lab name {lab!r} must be 1-12 lowercase letters and digits")
        self.lab = lab
        self.netns = f"phvm-{lab}"
        self.subnet = ipaddress.ip_network(subnet, strict=True)
        self.gateway = str(self.subnet.network_address + 1)

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + FIRST_MACHINE + index)

    def tap(self, machine: str) -> str:
        return f"t-{machine}"[:15]

    def enter_prefix(self) -> list[str]:
        """Run a command in the lab's network namespace (and the machine's mount namespace)."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    def create(self) -> None:
        """Make the namespace and its bridge (idempotent)."""
        if not (NETNS_DIR / self.netns).exists():
            _run("ip", "netns", "add", self.netns)
        ns = ("ip", "-n", self.netns)
        _run(*ns, "link", "set", "lo", "up")
        if _run(*ns, "link", "show", BRIDGE, check=False) == "":
            _run(*ns, "link", "add", BRIDGE, "type", "bridge")
        _run(*ns, "addr", "replace", f"{self.gateway}/{self.subnet.prefixlen}", "dev", BRIDGE)
        _run(*ns, "link", "set", BRIDGE, "up")

    def add_tap(self, machine: str) -> str:
        """The machine's tap on the bridge (made if missing)."""
        tap = self.tap(machine)
        ns = ("ip", "-n", self.netns)
        if _run(*ns, "link", "show", tap, check=False) == "":
            _run(*ns, "tuntap", "add", "dev", tap, "mode", "tap")
        _run(*ns, "link", "set", tap, "master", BRIDGE, "up")
        return tap

    def destroy(self) -> None:
        """Remove the namespace (and with it the bridge and taps); idempotent."""
        _run("ip", "netns", "delete", self.netns, check=False)

    def pids(self) -> list[int]:
        """The processes in the namespace now."""
        return [int(p) for p in _run("ip", "netns", "pids", self.netns, check=False).split()]

    def exists(self) -> bool:
        return (NETNS_DIR / self.netns).exists()

    def connect(self, address: str, port: int, *, timeout: float = 5.0) -> socket.socket:
        """A TCP connection to `address:port` made inside the namespace (setns moves only the
        calling thread, so a short-lived thread makes the socket; it stays in the namespace)."""
        made: list[socket.socket] = []
        failed: list[BaseException] = []

        def enter_and_connect() -> None:
            try:
                with open(self.netns_path, "rb") as handle:
                    libc.setns(handle.fileno(), libc.CLONE_NEWNET)
                made.append(socket.create_connection((address, port), timeout=timeout))
            except BaseException as error:  # handed to the caller
                failed.append(error)

        thread = threading.Thread(target=enter_and_connect, name=f"netns-{self.netns}")
        thread.start()
        thread.join()
        if failed:
            raise failed[0]
        return made[0]


def leftover_labs() -> list[str]:
    """Names of lab namespaces that exist now (what a crashed run may have left)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(
        p.name.removeprefix("phvm-") for p in NETNS_DIR.iterdir() if p.name.startswith("phvm-")
    )

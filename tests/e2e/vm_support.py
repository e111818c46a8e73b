"""What the VM e2e test needs beside the harness (pilothouse.cli.vm): a control plane and the CLI
running inside the lab's network namespace, on the host side of its bridge.

`LabControlPlane` is `python3 -m controlplane` (mutual TLS, embedded etcd) started through the
lab's `command` prefix, listening on the bridge's address, in a process group of its own that
`stop()` kills whole; `cli(...)` runs `pilothouse` there with the admin's config. `ssh(...)`
runs a command on a machine as root with the lab's key and known_hosts (strict).

Invariant: every process started here is killed by its own PID (group) when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pilothouse.cli.vm.lab import Lab
from pilothouse.cli.vm.machine import Machine

REPO = Path(__file__).resolve().parents[2]
PILOTHOUSE = [sys.executable, "-m", "pilothouse.cli.main"]
T = TypeVar("T")


class LabControlPlane:
    def __init__(self, lab: Lab, data_dir: Path, *, flags: Sequence[str] = ()) -> None:
        self.lab = lab
        self.data_dir = data_dir
        self.address = f"{lab.network.gateway}:7070"
        self.flags = list(flags)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "controlplane.log"

    def start(self, timeout: float = 120.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "controlplane", "--data-dir", str(self.data_dir),
            "--listen", self.address, "--tls-san", self.lab.network.gateway, *self.flags,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.lab.command(argv), cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, start_new_session=True,
            )  # fmt: skip
        config = self.data_dir / "admin.conf"
        deadline = time.monotonic() + timeout
        while not (config.exists() and (self.data_dir / "controlplane.addr").exists()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the control plane did not start:\n{self.tail()}")
            time.sleep(0.2)
        wait_for("the API answering", lambda: self.cli("get", "nodes").returncode == 0, 60)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cli_argv(self, *args: str) -> list[str]:
        """`pilothouse --config admin.conf --server … ARGS` (to run in the lab's namespace)."""
        return [*PILOTHOUSE, "--config", str(self.data_dir / "admin.conf"),
                "--server", self.address, *args]  # fmt: skip

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """`pilothouse … ARGS` inside the lab's namespace."""
        argv = self.cli_argv(*args)
        return subprocess.run(
            self.lab.command(argv), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )

    def get_json(self, *args: str) -> Any:
        done = self.cli("get", *args, "-o", "json")
        assert done.returncode == 0, f"get {' '.join(args)} failed: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else {"items": []}  # none found


def ssh(
    lab: Lab, machine: Machine, command: str, *, timeout: float = 120.0, stdin: bytes = b""
) -> str:
    """Run `command` on `machine` as root; its stdout (AssertionError if it fails)."""
    done = ssh_run(lab, machine, command, timeout=timeout, stdin=stdin)
    assert done.returncode == 0, f"{machine.name}: `{command}` failed: {done.stderr.strip()}"
    return done.stdout


def ssh_run(
    lab: Lab, machine: Machine, command: str, *, timeout: float = 120.0, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh", "-i", str(lab.key.private), "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
        f"root@{machine.address}", command,
    ]  # fmt: skip
    done = subprocess.run(lab.command(argv), input=stdin, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )  # fmt: skip


def wait_for(what: str, check: Callable[[], T], within: float = 300.0, every: float = 1.0) -> T:
    """Until `check()` is truthy (its value); AssertionError naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s (last: {value!r})")
        time.sleep(every)

"""Process records that survive their writer, and ending processes by them.

A `ProcessRecord` is a pid plus the process's start time (field 22 of /proc/PID/stat, in clock
ticks since boot). The pair names one process for the life of the machine: a pid that the
kernel handed to someone else since has another start time, so it is never signalled.

Invariants:
- every signal sent here goes to a recorded process (or its process group) whose start time
  still matches, or to a process whose command line names the caller's own directory: never
  to anything found by its name;
- reading, writing and removing pid files never raises for a missing or malformed file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    pid: int
    start_time: int  # clock ticks since boot; 0 when unknown

    def alive(self) -> bool:
        """The very process recorded still exists (and is not a zombie)."""
        stat = _stat(self.pid)
        if stat is None or stat[0] == "Z":
            return False
        return self.start_time == 0 or stat[1] == self.start_time

    def signal_group(self, sig: int) -> None:
        """Signal the recorded process's group (it leads one: children start in a session of
        their own), or the process alone if the group is gone."""
        if not self.alive():
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
        except PermissionError:
            log.warning("process.signal_refused", pid=self.pid)


def record_of(pid: int) -> ProcessRecord:
    stat = _stat(pid)
    return ProcessRecord(pid=pid, start_time=stat[1] if stat else 0)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, or None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def write(path: Path, pid: int) -> ProcessRecord:
    record = record_of(pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{record.pid} {record.start_time}\n")
    temporary.replace(path)
    return record


def read(path: Path) -> ProcessRecord | None:
    try:
        pid, start = path.read_text().split()
        return ProcessRecord(pid=int(pid), start_time=int(start))
    except (OSError, ValueError):
        return None


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def end(records: Iterable[ProcessRecord], *, timeout: float = 10.0) -> None:
    """SIGTERM each recorded process group, wait up to `timeout`, then SIGKILL what is left."""
    pending = [r for r in records if r.alive()]
    for record in pending:
        record.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = [r for r in pending if r.alive()]
    for record in pending:
        log.warning("process.killed", pid=record.pid, after_s=timeout)
        record.signal_group(signal.SIGKILL)


def naming(directory: Path, *, programs: Collection[str]) -> list[ProcessRecord]:
    """Processes of `programs` whose command line names a path inside `directory`.

    The last-resort sweep after a crash: every process a local cluster starts (etcd, the
    registry, agents, container monitors) is given paths in the cluster's data dir, and
    orphans keep their command line when their parent dies. A program is matched by the
    base name of its argv[0] or, for Python, by the module it runs (`-m controlplane`), so
    a person's `tail -f <data-dir>/logs/…` is never taken for part of the cluster.
    """
    marker = os.fsencode(str(directory.resolve()).rstrip("/") + "/")
    wanted = {os.fsencode(p) for p in programs}
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = os.path.basename(argv[0])
        module = argv[argv.index(b"-m") + 1] if b"-m" in argv[:-1] else b""
        if (program in wanted or module in wanted) and any(marker in arg for arg in argv):
            found.append(record_of(int(entry.name)))
    return [r for r in found if r.alive()]


def kill(records: Iterable[ProcessRecord]) -> None:
    """SIGKILL each recorded process (not its group) if it is still the same process."""
    for record in records:
        if record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)

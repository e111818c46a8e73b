"""The `up` supervisor once its cluster is up: a small process that only keeps the children
running, instead of the whole CLI (gRPC, the PKI, protobuf) idling for the cluster's lifetime.

`up` sets the cluster up with everything loaded, then `hand_over` replaces the program of its
process (exec: same pid, same children) with `python3 -m pilothouse.cli.cluster.keeper`, which
imports only what supervising needs and takes each child's current run back (`adopt_all`,
`Supervisor.adopt`). A stop signal (SIGTERM from `down`, Ctrl-C) makes the keeper exec the
cluster module again (`python3 -m pilothouse.cli.cluster finish`), which adopts the runs in
turn and stops the cluster in order, as `up` always has (`parts.LocalCluster.shutdown`).

Invariants:
- the pid in up.pid is the same process from `up` to the end of `finish` (exec keeps pid, start
  time and children), so `down` and a detached `up`'s wait see one supervisor throughout;
- SIGTERM and SIGINT are blocked across each exec and unblocked only once the next program has
  its handlers: none is lost, and none kills a program that has not set up yet;
- the state file holds every child's spec and current run; it lives in the data dir, so `down`
  removes it with the rest.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from pilothouse.process import footprint

if __name__ == "__main__":  # the keeper's own program, before asyncio and structlog load:
    footprint.leave_out_optional_renderers()
    # It speaks no TLS: asyncio works without ssl, which would map OpenSSL (~5 MiB). One
    # thread, so no malloc arenas to bound.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]  # import raises ImportError

import asyncio

import structlog

from pilothouse import logs
from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def write_state(state_file: Path, supervisor: Supervisor) -> None:
    """Record each child's spec and current run for the next program of this process."""
    children = [
        {
            "name": spec.name,
            "argv": list(spec.argv),
            "log_path": str(spec.log_path),
            "env": None if spec.env is None else dict(spec.env),
            "cwd": None if spec.cwd is None else str(spec.cwd),
            "stop_timeout": spec.stop_timeout,
            "pid": pid,
            "runs": runs,
        }
        for spec, pid, runs in supervisor.runs()
    ]
    state = {"pids": str(supervisor.state_dir), "children": children}
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(state_file)


def adopt_all(state_file: Path) -> Supervisor:
    """A supervisor of the runs `state_file` names (they are this process's children)."""
    state = json.loads(state_file.read_text())
    supervisor = Supervisor(Path(state["pids"]))
    for child in state["children"]:
        spec = ChildSpec(
            name=child["name"],
            argv=tuple(child["argv"]),
            log_path=Path(child["log_path"]),
            env=child["env"],
            cwd=None if child["cwd"] is None else Path(child["cwd"]),
            stop_timeout=child["stop_timeout"],
        )
        supervisor.adopt(spec, child["pid"], runs=child["runs"])
    return supervisor


def exec_into(argv: list[str]) -> None:
    """Replace this process's program with `argv` (a Python module), stop signals blocked
    until it unblocks them. Returns only if the exec failed (signals unblocked again)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        os.execv(sys.executable, [sys.executable, *argv])
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise


async def hand_over(
    state_file: Path, supervisor: Supervisor, *, data_dir: Path, stop: asyncio.Event
) -> None:
    """From `up`, once the cluster is ready: become the keeper. Returns without exec when a
    stop was asked for meanwhile (`stop`), or when the exec failed.

    The main thread blocks the stop signals first, then lets the event loop handle any that
    a worker thread took before: a signal is either seen here or stays pending for the keeper
    (only one a worker thread takes in the last moment before the exec would be lost; `down`
    then ends the cluster after its wait, as after a crash)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    await asyncio.sleep(0.05)
    if stop.is_set():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return
    write_state(state_file, supervisor)
    argv = ["-m", __name__, "--state", str(state_file), "--data-dir", str(data_dir)]
    exec_into([*argv, "--log-level", str(logs.current_level())])


async def keep(state_file: Path, data_dir: Path, *, log_level: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    supervisor = adopt_all(state_file)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    await stop.wait()
    # `finish` adopts the children from the state as it is now (runs restarted meanwhile).
    write_state(state_file, supervisor)
    try:
        cluster = ["-m", "pilothouse.cli.cluster", "--log-level", str(log_level)]
        exec_into([*cluster, "finish", "--data-dir", str(data_dir)])
    except OSError as error:  # then at least end the children; `down` sweeps the rest
        logs_failed = {"error": str(error), "data_dir": str(data_dir)}
        structlog.get_logger(__name__).error("cluster.finish_exec_failed", **logs_failed)
        await supervisor.stop_all()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m pilothouse.cli.cluster.keeper")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--log-level", type=int, default=logging.INFO)
    args = parser.parse_args(argv)
    logs.setup(level=args.log_level)
    asyncio.run(keep(args.state, args.data_dir, log_level=args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())

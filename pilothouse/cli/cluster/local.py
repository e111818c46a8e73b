"""`pilothouse up` and `pilothouse down`: a whole cluster on this machine, with one command.

`up` runs a `parts.LocalCluster` (registry with the test image, control plane, N agents) and
supervises it until SIGINT or SIGTERM, in the foreground, or with `-d` in a process of its
own (a new session) that it waits for until `cluster.json` says the cluster is ready. Once
the cluster is ready, the process becomes the small `keeper` (exec, same pid) for as long as
the cluster runs; a stop signal brings it back here (`finish`). Stopping (Ctrl-C, SIGTERM,
`down`) stops the parts in order and removes what they made (see `parts`). `down` SIGTERMs
the supervisor named in `up.pid` and waits; if the supervisor was killed, it ends the
children by their pid files and cleans up from the data dir alone (`cleanup.sweep`).

Invariants: one cluster per data dir (`up.pid` names its supervisor); `down` is idempotent
and exits 0 when nothing runs; `up` on the data dir of a crashed cluster first cleans it up
as `down` would; a failed `up` (foreground or detached) leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import structlog

from pilothouse.cli.cluster import cleanup, clientconfig, hosts, keeper, probes, processes
from pilothouse.cli.cluster.info import ClusterInfo
from pilothouse.cli.cluster.layout import Layout
from pilothouse.cli.cluster.netns import HostNetworkError
from pilothouse.cli.cluster.parts import READY_TIMEOUT_S, ClusterStartError, LocalCluster
from pilothouse.cli.cluster.probes import NotReady
from pilothouse.cli.cluster.security import SecurityError

log = structlog.get_logger(__name__)

STOP_TIMEOUT_S = 90.0  # SIGTERM to the supervisor -> it has stopped and cleaned up


class ClusterError(RuntimeError):
    """`up` or `down` cannot do what was asked; the message says why and what to do."""


def running(layout: Layout) -> processes.ProcessRecord | None:
    """The supervisor of the cluster in this data dir, if one runs."""
    record = processes.read(layout.up_pid)
    return record if record is not None and record.alive() else None


# --- up --------------------------------------------------------------------------------------


async def up(
    *,
    nodes: int = 1,
    hollow_nodes: int = 0,
    control_planes: int = 1,
    data_dir: Path | None = None,
    detach: bool = False,
    client_config: Path | None = None,
    placement: hosts.Placement = hosts.Placement.NETNS,
    network: hosts.NodeNetwork | None = None,
    out: TextIO = sys.stdout,
    pod_eviction_timeout: float | None = None,
) -> int:
    """Start a local cluster; in the foreground until signalled, else until it is ready.

    `placement` says where nodes run (`--network`); `network` (tests) makes them instead.
    `pod_eviction_timeout` (None: the control plane's default) goes to every member.
    """
    if nodes < 1:
        raise ClusterError(f"--nodes must be at least 1, got {nodes}")
    if pod_eviction_timeout is not None and pod_eviction_timeout < 0:
        raise ClusterError(f"--pod-eviction-timeout must not be negative: {pod_eviction_timeout}")
    if network is None and (reason := hosts.missing_for(placement)) is not None:
        raise ClusterError(
            f"cannot put nodes in network namespaces: {reason}; "
            "run as root, or use `--network host` (every node on this machine's network)"
        )
    layout = Layout.at(data_dir)
    if (record := running(layout)) is not None:
        raise ClusterError(
            f"a local cluster already runs from {layout.data_dir} (pid {record.pid}); "
            f"stop it with `pilothouse down --data-dir {layout.data_dir}`"
        )
    config_file = clientconfig.path(client_config)
    if detach:
        return await _detach(
            layout,
            nodes=nodes,
            hollow_nodes=hollow_nodes,
            control_planes=control_planes,
            client_config=config_file,
            placement=placement,
            out=out,
            pod_eviction_timeout=pod_eviction_timeout,
        )
    return await _foreground(
        layout,
        nodes=nodes,
        hollow_nodes=hollow_nodes,
        control_planes=control_planes,
        client_config=config_file,
        placement=placement,
        network=network or hosts.network_for(placement),
        out=out,
        keep=network is None,  # a network a test made lives in this program only
        pod_eviction_timeout=pod_eviction_timeout,
    )


async def _detach(
    layout: Layout,
    *,
    nodes: int,
    hollow_nodes: int = 0,
    control_planes: int = 1,
    client_config: Path,
    placement: hosts.Placement,
    out: TextIO,
    pod_eviction_timeout: float | None = None,
) -> int:
    """Run `up` in a new session of its own and return once the cluster is ready."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        layout.cluster_file.unlink()
    argv = [
        sys.executable,
        "-m",
        "pilothouse.cli.cluster",
        "up",
        "--nodes",
        str(nodes),
        "--hollow-nodes",
        str(hollow_nodes),
        "--control-planes",
        str(control_planes),
        "--network",
        placement.value,
        "--data-dir",
        str(layout.data_dir),
        "--client-config",
        str(client_config),
    ]
    if pod_eviction_timeout is not None:
        argv += ["--pod-eviction-timeout", str(pod_eviction_timeout)]
    offset = layout.up_log.stat().st_size if layout.up_log.exists() else 0
    with layout.up_log.open("ab") as output:
        # Not an asyncio subprocess: it must outlive this event loop and this process.
        child = subprocess.Popen(  # noqa: ASYNC220
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
        )
    loop = asyncio.get_running_loop()
    # Hollow nodes join a few at a time: the child's own wait for them (parts) is longer.
    started = loop.time()
    deadline = started + READY_TIMEOUT_S + 30 + hollow_nodes * 0.2
    while True:
        info = ClusterInfo.read(layout)
        if info is not None and info.pid == child.pid:
            out.write(f"local cluster running in the background (pid {child.pid})\n")
            out.write(info.describe() + "\n")
            out.write(f"stop it with: pilothouse down --data-dir {layout.data_dir}\n")
            return 0
        if child.poll() is not None:
            raise ClusterError(
                f"the cluster failed to start (exit code {child.returncode}); "
                f"its log is {layout.up_log}:\n{_tail(layout.up_log, offset)}"
            )
        if loop.time() > deadline:
            child.send_signal(signal.SIGTERM)
            raise ClusterError(
                f"the cluster was not ready within {deadline - started:.0f} s and was "
                f"stopped; its log is {layout.up_log}:\n{_tail(layout.up_log, offset)}"
            )
        await asyncio.sleep(0.1)


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


async def _foreground(
    layout: Layout,
    *,
    nodes: int,
    hollow_nodes: int = 0,
    control_planes: int = 1,
    client_config: Path,
    placement: hosts.Placement,
    network: hosts.NodeNetwork,
    out: TextIO,
    keep: bool = True,
    pod_eviction_timeout: float | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A crashed cluster's leftovers would hold ports, mounts and state: clear them first.
    if any(p.exists() for p in layout.made()):
        await asyncio.to_thread(_clean_after_crash, layout, network)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    processes.write(layout.up_pid, os.getpid())
    cluster = LocalCluster(
        layout,
        network=network,
        nodes=hosts.node_names(nodes),
        placement=placement,
        control_planes=control_planes,
        hollow_nodes=hollow_nodes,
        controlplane_flags=(
            ["--pod-eviction-timeout", str(pod_eviction_timeout)]
            if pod_eviction_timeout is not None
            else []
        ),
    )
    try:
        starting = asyncio.create_task(cluster.start(client_config=client_config))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stopped.cancel()
        try:
            info = starting.result()
        except (ClusterStartError, SecurityError, NotReady, HostNetworkError) as error:
            raise ClusterError(str(error)) from None
        out.write(info.describe() + "\nCtrl-C stops the cluster and removes what it made.\n")
        out.flush()
        if keep and not stop.is_set():
            try:  # returns only if stopped meanwhile or the exec failed: then it stays here
                await keeper.hand_over(
                    layout.keeper_file, cluster.supervisor, data_dir=layout.data_dir, stop=stop
                )
            except OSError as error:
                log.warning("cluster.keeper_failed", error=str(error))
        await stop.wait()
        return 0
    finally:
        # The handlers stay during shutdown: a second Ctrl-C must not cut the clean-up short.
        try:
            await cluster.shutdown()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def finish(*, data_dir: Path | None = None) -> int:
    """The keeper's way back on a stop signal: adopt the children it kept and stop the cluster
    in order (`LocalCluster.shutdown`), in the process (pid) that started it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut clean-up short
        loop.add_signal_handler(sig, lambda: None)
    layout = Layout.at(data_dir)
    supervisor = keeper.adopt_all(layout.keeper_file)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, keeper.STOP_SIGNALS)
    info = ClusterInfo.read(layout)
    if info is None:  # no description of the cluster: end the children, sweep the rest
        await supervisor.stop_all()
        await asyncio.to_thread(_clean_after_crash, layout, hosts.SharedNetwork())
        return 0
    await LocalCluster.resumed(layout, info, supervisor).shutdown()
    return 0


# --- down ------------------------------------------------------------------------------------


def _clean_after_crash(layout: Layout, network: hosts.NodeNetwork) -> cleanup.Leftovers:
    """End the children of a dead supervisor by their pid files, then sweep."""
    records = [processes.read(p) for p in sorted(layout.pids.glob("*.pid"))]
    processes.end([r for r in records if r is not None], timeout=10)
    info = ClusterInfo.read(layout)
    network.destroy(layout.cluster_id)
    hosts.destroy_all(layout.cluster_id)  # whichever placement the crashed `up` used
    left = cleanup.sweep(layout)
    if info is not None and info.client_config:
        clientconfig.forget(Path(info.client_config), info.controlplane, info.client_settings)
    return left


async def down(
    *,
    data_dir: Path | None = None,
    network: hosts.NodeNetwork | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Stop the local cluster in `data_dir` and remove what it made; 0 also if none runs."""
    layout = Layout.at(data_dir)
    supervisor = running(layout)
    if supervisor is not None:
        os.kill(supervisor.pid, signal.SIGTERM)  # the supervisor alone: it stops the rest

        async def gone() -> bool:
            return not supervisor.alive()

        with contextlib.suppress(probes.NotReady):
            await probes.wait_until(gone, what="the supervisor", deadline_s=STOP_TIMEOUT_S)
        if supervisor.alive():
            log.warning("cluster.supervisor_killed", pid=supervisor.pid)
            processes.kill([supervisor])
    made = [p for p in layout.made() if p.exists()]
    left = await asyncio.to_thread(_clean_after_crash, layout, network or hosts.SharedNetwork())
    if left:
        raise ClusterError(f"could not remove everything in {layout.data_dir}: {left.describe()}")
    if supervisor is not None:
        out.write(f"local cluster in {layout.data_dir} stopped and removed\n")
    elif made:
        out.write(f"removed what a stopped cluster left in {layout.data_dir}\n")
    else:
        out.write(f"no local cluster runs from {layout.data_dir}\n")
    return 0

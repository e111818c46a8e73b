"""What bench/scale.py measures with (issue 17): process figures from /proc, the cluster's
client and children, the API probe that runs beside the load, the pod watch that times binds
and Running, the one-node hollow process whose loss is timed, and the control plane's
restart (`restart`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import ensure_namespace, percentile
from pilothouse import credentials
from pilothouse.cli.cluster import processes
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.cluster import LocalClusterRun

IMAGE = "hollow/pause@sha256:" + "0" * 64
RESTART_NAMESPACE = "after-restart"
JUDGED_AFTER_WAVE_S = 6.0  # s: a grace period, an eviction timeout and a margin
RESTART_STEPS = (
    "controlplane.stopped",
    "etcd.started",
    "controlplane.serving",
    "leader.previous_run_retired",
    "leader.elected",
    "nodesync.started",
)
NAMESPACE = "scale"
PROBE_NAMESPACE = "scale-probe"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def client_of(run: LocalClusterRun, *, timeout: float = 60.0) -> Client:
    info = run.cluster_info()
    admin = run.admin()
    assert admin is not None
    return Client(
        info.controlplane,
        credentials=admin.channel_credentials(),
        options=credentials.channel_options(),
        timeout=timeout,
    )


def pid_of(run: LocalClusterRun, child: str) -> int:
    record = processes.read(run.layout.pids / f"{child}.pid")
    assert record is not None, f"no pid file for {child}"
    return record.pid


class Probe:
    """Apply/Get/List from one client in a loop while the load runs."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.samples: dict[str, list[float]] = {"apply": [], "get": [], "list": []}

    async def run(self) -> None:
        n = 0
        while True:
            cm = o.ConfigMap()
            cm.metadata.name, cm.metadata.namespace = f"probe-{n % 20}", PROBE_NAMESPACE
            cm.data["n"] = str(n)
            name = cm.metadata.name
            calls: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
                ("apply", functools.partial(self.client.apply, cm)),
                (
                    "get",
                    functools.partial(
                        self.client.get, Kind.CONFIGMAP, name, namespace=PROBE_NAMESPACE
                    ),
                ),
                ("list", lambda: self.client.list(Kind.CONFIGMAP, namespace=PROBE_NAMESPACE)),
            )
            for kind, call in calls:  # made one at a time: a cancelled probe leaves none behind
                begun = time.perf_counter()
                await call()
                self.samples[kind].append(time.perf_counter() - begun)
            n += 1
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {
                "n": len(v),
                "p50_ms": round(percentile(v, 50) * 1000, 1) if v else 0.0,
                "p99_ms": round(percentile(v, 99) * 1000, 1) if v else 0.0,
            }
            for k, v in self.samples.items()
        }


async def watch_pods(client: Client, state: dict[str, object]) -> None:
    """Time of each pod's first bind and first Running, by uid."""
    bound: dict[str, float] = state["bound"]  # type: ignore[assignment]
    running: dict[str, float] = state["running"]  # type: ignore[assignment]
    nodes: dict[str, str] = state["nodes"]  # type: ignore[assignment]
    async for change in client.watch(Kind.POD, namespace=NAMESPACE):
        pod = change.object
        if pod is None:
            continue
        uid = pod.metadata.uid
        if change.type.name == "DELETED":
            running.pop(uid, None)
            nodes.pop(uid, None)
            continue
        now = time.monotonic()
        if pod.spec.node_name:
            nodes[uid] = pod.spec.node_name
            bound.setdefault(uid, now)
        if pod.status.phase == "Running":
            running.setdefault(uid, now)
        else:
            running.pop(uid, None)


def best_rate(times: list[float], window: float = 5.0) -> float:
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


async def until(check, *, within: float, what: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether `check` came true within `within` s (a miss is reported, not fatal)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            print(f"timed out after {within:.0f} s: {what}", flush=True)
            return False
        await asyncio.sleep(0.1)
    return True


def lost_node(run: LocalClusterRun, root: Path) -> subprocess.Popen[bytes]:
    """A one-node hollow process of its own (its loss is a SIGKILL)."""
    made = run.cli("token", "create", "--ttl", "30m")
    token = made.stdout.strip().split()[-1]
    token_file = root / "lost-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    info = json.loads(run.layout.cluster_file.read_text())
    creds = run.credentials()
    assert creds is not None
    join = (run.layout.controlplane / "join.addr").read_text().strip()
    node_ip = run.cluster_info().controlplane.rpartition(":")[0]
    argv = [sys.executable, "-m", "nodeagent.hollow", "--nodes", "1", "--name-prefix", "lost-"]
    argv += ["--server", info["controlplane"], "--join-server", join]
    argv += ["--token-file", str(token_file), "--ca-cert-hash", creds.ca_cert_hash]
    argv += ["--state-dir", str(root / "lost"), "--node-ip", node_ip]
    return subprocess.Popen(
        argv,
        stdout=(root / "lost.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def restart(run: LocalClusterRun, *, namespace: str, image: str) -> dict[str, object]:
    """SIGTERM to the control plane's process group (it and its etcd; `up`'s supervisor starts
    it again), as a service restart: seconds until a new run serves (a List answers) and
    reconciles (a new 10-replica Deployment all Running); pods that changed node or uid (of
    those not already being deleted before it), and nodes logged NotReady, after it."""
    async with client_of(run) as client:
        listed = (await client.list(Kind.POD, namespace=namespace)).items
    # Pods already being deleted (the lost node's, until the pod GC takes them) may go.
    before = {
        p.metadata.name: (p.metadata.uid, p.spec.node_name)
        for p in listed
        if not p.metadata.HasField("deletion_timestamp")
    }
    log = run.layout.log("controlplane")
    mark = log.stat().st_size if log.exists() else 0
    old = pid_of(run, "controlplane")
    os.killpg(old, signal.SIGTERM)
    killed = time.monotonic()
    killed_at, killed_wall = time.strftime("%H:%M:%S", time.gmtime()), time.time()
    serving_s = reconciled_s = None
    while time.monotonic() - killed < 300:
        record = processes.read(run.layout.pids / "controlplane.pid")
        if record is not None and record.pid != old:
            try:
                async with client_of(run, timeout=2.0) as client:
                    await client.list(Kind.NODE)
                serving_s = time.monotonic() - killed
                break
            except Exception:
                pass
        await asyncio.sleep(0.1)
    if serving_s is None:
        return {"serving_s": None}
    small = factories.container(image=image, cpu="10m", memory="16Mi")
    async with client_of(run) as client:
        # In a namespace of its own, so that watching it costs the restarted control plane a
        # List of 10 pods, not of the whole load (polled every 0.1 s, that was 15% of its CPU).
        await ensure_namespace(client, RESTART_NAMESPACE)
        await client.apply(
            factories.deployment(
                name="after-restart", namespace=RESTART_NAMESPACE, replicas=10, containers=[small]
            )
        )

        async def reconciled() -> bool:
            pods = (await client.list(Kind.POD, namespace=RESTART_NAMESPACE)).items
            return sum(p.status.phase == "Running" for p in pods) >= 10

        while time.monotonic() - killed < 300:
            if await reconciled():
                reconciled_s = time.monotonic() - killed
                break
            await asyncio.sleep(0.1)
        # Judge only once the node-lifecycle controller stopped waiting for agents to come
        # back (its start wave), and a grace period and eviction timeout more: a node it
        # marks wrongly is marked by then, and its pods moved.
        waved = await _logged(log, mark, '"nodelifecycle.reconnected"', within=120.0)
        if waved:
            await asyncio.sleep(JUDGED_AFTER_WAVE_S)
        after = {
            p.metadata.name: (p.metadata.uid, p.spec.node_name)
            for p in (await client.list(Kind.POD, namespace=namespace)).items
        }
    moved = sum(1 for name, was in before.items() if after.get(name) != was)
    text = log.read_text(errors="replace")[mark:] if log.exists() else ""
    judged = [_event(line) for line in text.splitlines() if '"node.not_ready"' in line]
    wave = [_event(line) for line in text.splitlines() if '"nodelifecycle.reconnected"' in line]
    return {
        "pods": len(before),
        "serving_s": round(serving_s, 2),
        "reconciling_s": round(reconciled_s, 2) if reconciled_s else None,
        "pods_moved_or_replaced": moved,
        "killed_at": killed_at,  # UTC, the logs' clock
        # Where the time went: seconds from the signal to each step's first log line.
        "steps_s": {e: logged_after(text, e, None, killed_wall) for e in RESTART_STEPS},
        # The lifecycle controller's wait for agents after its start: heard of nodes, seconds.
        "reconnect_wave": {k: wave[0].get(k) for k in ("heard", "nodes", "seconds")}
        if wave
        else None,
        "nodes_not_ready_after": text.count('"node.not_ready"'),
        # The first few, to tell why: when (log time) and how long each was silent.
        "not_ready_sample": [
            {k: e.get(k) for k in ("node", "silent", "timestamp")} for e in judged[:10]
        ],
    }


def logged_after(text: str, event: str, node: str | None, since: float) -> float | None:
    """Seconds from `since` (wall clock) to the first `event` (about `node`) in a JSON log."""
    for line in text.splitlines():
        if f'"{event}"' in line and (node is None or f'"{node}"' in line):
            stamp = str(_event(line).get("timestamp", ""))
            with contextlib.suppress(ValueError):
                at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                if at >= since - 1:
                    return round(at - since, 2)
    return None


async def _logged(log: Path, mark: int, needle: str, *, within: float) -> bool:
    """Whether `needle` appears in `log` after byte `mark` within `within` seconds (each look
    reads only what was written since the last one)."""
    until = time.monotonic() + within
    seen, tail = mark, b""
    while time.monotonic() < until:
        written = await asyncio.to_thread(_read_from, log, seen)
        seen += len(written)
        tail = tail[-len(needle) :] + written  # a line may arrive split between two looks
        if needle.encode() in tail:
            return True
        await asyncio.sleep(0.5)
    return False


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read()


def _event(line: str) -> dict[str, object]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {"line": line[:200]}
    return parsed if isinstance(parsed, dict) else {}

"""How fast a real cluster heals (issue #5), as root: a control plane (embedded etcd, default
node grace 3 s and eviction delay 2 s) and 3 agents with real runc. The JSON names each
part's configuration (`configuration`) and what it omits.

(a) Container exit -> running again, on a cluster of plain processes (tests.fixtures.agents:
    plaintext, no pod network), since only there can the agents run with restart backoff 0
    (no delay, no jitter; `up` has no flag for it), so what is measured is Pilothouse's own
    reaction; a restart is local to one agent (the pod's sandbox is kept), so mutual TLS and
    CNI, omitted here, play no part in it. A Deployment of pods whose
    container exits 1 after a short run; for every restart, from the container status:
    `lastState.terminated.finishedAt` -> `state.running.startedAt` (the agent's own clocks),
    and finishedAt -> the API's watch showing the pod Running again with the new restart count.
(b) Node loss -> all its replicas Running elsewhere: a 9-replica Deployment of sleepers.
    By default (`--cluster up`) on what users run, `pilothouse up --nodes 3` (mutual TLS, CNI,
    nodes in network namespaces, bench/upcluster.py): the link of the node holding the most
    replicas is cut (a machine gone silent), from the cut until the watch shows every replica
    Running on the other nodes; then the link is restored and the node's return is timed:
    until its stale containers have stopped (fencing) and until it is Ready again. With
    `--cluster processes`: the agent is SIGKILLed with its monitors and containers and started
    again. Repeated for --rounds.
The last line is JSON. Goals: (a) <= 100 ms; (b) <= 5 s with the defaults; stale containers
of a returning node stopped <= 1 s after its return.

Usage: python3 bench/heal.py [--restarts 10] [--rounds 2] [--cluster up|processes]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PodWatch,
    ensure_namespace,
    ms,
    percentile,
    require_root,
    running_cluster,
    wait_no_containers,
    wait_nodes_ready,
)
from bench.upcluster import CONFIGURATION, UpCluster, up_cluster
from pilothouse.client import ChangeType, Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import Cluster, deployment

NAMESPACE = "bench-heal"
NO_BACKOFF = ("--backoff-initial", "0", "--backoff-max", "0", "--backoff-jitter", "0")
PROCESSES = {
    "cluster": "control plane + 3 agents as processes (tests.fixtures.agents)",
    "mutual_tls": False,
    "pod_network": "none (each container a network namespace of its own, loopback only)",
    "nodes_in": "the host's network",
    "etcd": "embedded, one member",
    "agent_flags": list(NO_BACKOFF),
    "omitted": ["mutual TLS", "CNI pod networking", "nodes in network namespaces"],
}


def _seconds(ts: object) -> float:
    return ts.seconds + ts.nanos / 1e9  # type: ignore[attr-defined]


async def container_restarts(cluster: Cluster, restarts: int) -> dict[str, object]:
    """(a): gaps over `restarts` restarts of 3 crash-looping pods (one per node)."""
    in_agent: list[float] = []
    to_api: list[float] = []
    seen: set[tuple[str, int]] = set()
    async with cluster.client() as client:
        await client.apply(
            deployment("crasher", namespace=NAMESPACE, replicas=3, script="sleep 0.3; exit 1")
        )
        async with asyncio.timeout(120):
            async for change in client.watch(Kind.POD, namespace=NAMESPACE):
                now = time.time()
                pod = change.object
                if change.type is ChangeType.BOOKMARK or not isinstance(pod, o.Pod):
                    continue
                for status in pod.status.container_statuses:
                    key = (pod.metadata.uid, status.restart_count)
                    if status.restart_count == 0 or key in seen:
                        continue
                    if not status.state.HasField("running"):
                        continue
                    seen.add(key)
                    finished = _seconds(status.last_state.terminated.finished_at)
                    in_agent.append(_seconds(status.state.running.started_at) - finished)
                    to_api.append(now - finished)
                if len(in_agent) >= restarts:
                    break
        await client.delete(Kind.DEPLOYMENT, "crasher", namespace=NAMESPACE)
        await wait_no_containers(cluster)
    return {
        "restarts_measured": len(in_agent),
        "backoff_configured_ms": 0,
        "exit_to_running_in_agent_ms_p50": ms(percentile(in_agent, 50)),
        "exit_to_running_in_agent_ms_max": ms(max(in_agent)),
        "exit_to_running_seen_via_api_ms_p50": ms(percentile(to_api, 50)),
        "exit_to_running_seen_via_api_ms_max": ms(max(to_api)),
    }


async def node_loss(cluster: Cluster, rounds: int, replicas: int = 9) -> dict[str, object]:
    """(b): kill the busiest node with its containers, time until all replicas run elsewhere."""
    samples: list[float] = []
    async with cluster.client() as client, PodWatch(client, NAMESPACE) as watch:
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=replicas))
        await watch.wait_running(replicas)
        for _ in range(rounds):
            victim, lost = _busiest(watch)
            killed_at = time.time()
            await cluster.kill_agent(victim, containers_too=True)
            samples.append(await _all_elsewhere(watch, victim, lost, replicas) - killed_at)
            await cluster.start_agent(victim)
            await wait_nodes_ready(client, sorted(cluster.agents))
        await client.delete(Kind.DEPLOYMENT, "web", namespace=NAMESPACE)
    await wait_no_containers(cluster)
    return {
        "replicas": replicas,
        "node_loss_to_all_running_elsewhere_s": [round(s, 2) for s in samples],
        "median_s": round(statistics.median(samples), 2),
        "node_grace_period_s": 3,
        "pod_eviction_timeout_s": 2,
    }


def _busiest(watch: PodWatch) -> tuple[str, set[str]]:
    """The node running the most of the watched replicas, and the uids of those it runs."""
    placed = {u: watch.node_of[u] for u in watch.live_running()}
    victim, _count = Counter(placed.values()).most_common(1)[0]
    return victim, {u for u, n in placed.items() if n == victim}


async def _all_elsewhere(watch: PodWatch, victim: str, lost: set[str], replicas: int) -> float:
    """Once `replicas` replicas run off `victim` and none of `lost` runs: when the last of
    them started running (time.time()); SystemExit after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        live = watch.live_running()
        elsewhere = [u for u in live if watch.node_of[u] != victim]
        if len(elsewhere) >= replicas and not lost & set(live):
            return max(live[u] for u in elsewhere)
        if time.monotonic() > deadline:
            raise SystemExit(f"node {victim}'s replicas never ran elsewhere")
        await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def _ready(client: Client, node: str) -> bool:
    found = await client.get(Kind.NODE, node)
    return any(c.type == "Ready" and c.status == "True" for c in found.status.conditions)  # type: ignore[attr-defined]


async def node_cut(cluster: UpCluster, rounds: int, replicas: int = 9) -> dict[str, object]:
    """(b) on `up`: cut the busiest node's link, time until all replicas run elsewhere; restore
    it, time until its stale containers stopped and until it is Ready again."""
    moved: list[float] = []
    fenced: list[float] = []
    ready: list[float] = []
    async with cluster.client() as client, PodWatch(client, NAMESPACE) as watch:
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=replicas))
        await watch.wait_running(replicas)
        for _ in range(rounds):
            victim, lost = _busiest(watch)
            stale = [c.pid for c in await cluster.containers(victim) if c.status == "running"]
            cut_at = time.time()
            cluster.set_link(victim, up=False)
            moved.append(await _all_elsewhere(watch, victim, lost, replicas) - cut_at)
            cluster.set_link(victim, up=True)
            back = time.monotonic()
            stopped_at = ready_at = None
            while stopped_at is None or ready_at is None:
                now = time.monotonic() - back
                if now > 60:
                    raise SystemExit(f"node {victim} never came back (stale stopped, Ready)")
                if stopped_at is None and not any(_alive(p) for p in stale):
                    stopped_at = now
                if ready_at is None and await _ready(client, victim):
                    ready_at = now
                await asyncio.sleep(0.02)
            fenced.append(stopped_at)
            ready.append(ready_at)
        await client.delete(Kind.DEPLOYMENT, "web", namespace=NAMESPACE)
    await wait_no_containers(cluster)  # type: ignore[arg-type]
    return {
        "replicas": replicas,
        "loss": "the node's link cut (its veth on the cluster bridge down)",
        "node_loss_to_all_running_elsewhere_s": [round(s, 2) for s in moved],
        "median_s": round(statistics.median(moved), 2),
        "return_to_stale_containers_stopped_s": [round(s, 2) for s in fenced],
        "return_to_node_ready_s": [round(s, 2) for s in ready],
        "node_grace_period_s": 3,
        "pod_eviction_timeout_s": 2,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cluster", choices=("up", "processes"), default="up", help="for (b)")
    opts = parser.parse_args()
    require_root()
    result: dict[str, object] = {
        "nodes": 3,
        "configuration": {
            "container_exit": PROCESSES,
            "node_loss": CONFIGURATION if opts.cluster == "up" else PROCESSES,
        },
    }
    async with asyncio.timeout(600), running_cluster(agents=3, agent_flags=NO_BACKOFF) as cluster:
        async with cluster.client() as client:
            await ensure_namespace(client, NAMESPACE)
            async with PodWatch(client, NAMESPACE) as watch:
                await client.apply(deployment("warmup", namespace=NAMESPACE, replicas=3))
                await watch.wait_running(3)
                await client.delete(Kind.DEPLOYMENT, "warmup", namespace=NAMESPACE)
        await wait_no_containers(cluster)
        result["container_exit"] = await container_restarts(cluster, opts.restarts)
        print(f"container exit: {result['container_exit']}", file=sys.stderr, flush=True)
        if opts.cluster == "processes":
            result["node_loss"] = await node_loss(cluster, opts.rounds)
    if opts.cluster == "up":
        async with asyncio.timeout(900), up_cluster(nodes=3) as up:
            async with up.client() as client:
                await wait_nodes_ready(client, up.agents)
                await ensure_namespace(client, NAMESPACE)
            result["node_loss"] = await node_cut(up, opts.rounds)
    print(f"node loss: {result['node_loss']}", file=sys.stderr, flush=True)
    exits = result["container_exit"]
    loss = result["node_loss"]
    result["goals"] = {
        "container_exit_le_100ms": exits["exit_to_running_in_agent_ms_p50"] <= 100,  # type: ignore[index]
        "node_loss_le_5s": max(loss["node_loss_to_all_running_elsewhere_s"]) <= 5,  # type: ignore[index]
    }
    if "return_to_stale_containers_stopped_s" in loss:  # type: ignore[operator]
        stopped = loss["return_to_stale_containers_stopped_s"]  # type: ignore[index]
        result["goals"]["stale_stopped_le_1s"] = max(stopped) <= 1  # type: ignore[index]
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

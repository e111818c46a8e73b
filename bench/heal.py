"""How fast a real cluster heals (issue #5), as root: a control plane (embedded etcd, default
node grace 3 s and eviction delay 2 s) and 3 agents with real runc.

(a) Container exit -> running again. The agents run with restart backoff 0 (no delay, no
    jitter), so what is measured is Pilothouse's own reaction. A Deployment of pods whose
    container exits 1 after a short run; for every restart, from the container status:
    `lastState.terminated.finishedAt` -> `state.running.startedAt` (the agent's own clocks),
    and finishedAt -> the API's watch showing the pod Running again with the new restart count.
(b) Node loss -> all its replicas Running elsewhere: a 9-replica Deployment of sleepers; the
    agent holding the most replicas is SIGKILLed together with its monitors and containers
    (a machine lost); from the kill until the watch shows every replica Running on the other
    nodes (none of the lost pods left). The node then comes back; repeated for --rounds.
The last line is JSON. Goals: (a) <= 100 ms; (b) <= 5 s with the defaults.

Usage: python3 bench/heal.py [--restarts 10] [--rounds 2]
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
    ms,
    percentile,
    require_root,
    running_cluster,
    wait_no_containers,
    wait_nodes_ready,
)
from pilothouse.client import ChangeType
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import Cluster, deployment

NAMESPACE = "bench-heal"
NO_BACKOFF = ("--backoff-initial", "0", "--backoff-max", "0", "--backoff-jitter", "0")


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
            placed = {u: watch.node_of[u] for u in watch.live_running()}
            victim, _count = Counter(placed.values()).most_common(1)[0]
            lost = {u for u, n in placed.items() if n == victim}
            killed_at = time.time()
            await cluster.kill_agent(victim, containers_too=True)
            deadline = time.monotonic() + 60
            while True:
                live = watch.live_running()
                elsewhere = [u for u in live if watch.node_of[u] != victim]
                if len(elsewhere) >= replicas and not lost & set(live):
                    samples.append(max(live[u] for u in elsewhere) - killed_at)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"node {victim}'s replicas never ran elsewhere")
                await asyncio.sleep(0.02)
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    require_root()
    result: dict[str, object] = {"nodes": 3}
    async with asyncio.timeout(600), running_cluster(agents=3, agent_flags=NO_BACKOFF) as cluster:
        async with cluster.client() as client, PodWatch(client, NAMESPACE) as watch:
            await client.apply(deployment("warmup", namespace=NAMESPACE, replicas=3))
            await watch.wait_running(3)
            await client.delete(Kind.DEPLOYMENT, "warmup", namespace=NAMESPACE)
        await wait_no_containers(cluster)
        result["container_exit"] = await container_restarts(cluster, opts.restarts)
        print(f"container exit: {result['container_exit']}", file=sys.stderr, flush=True)
        result["node_loss"] = await node_loss(cluster, opts.rounds)
        print(f"node loss: {result['node_loss']}", file=sys.stderr, flush=True)
    exits = result["container_exit"]
    loss = result["node_loss"]
    result["goals"] = {
        "container_exit_le_100ms": exits["exit_to_running_in_agent_ms_p50"] <= 100,  # type: ignore[index]
        "node_loss_le_5s": max(loss["node_loss_to_all_running_elsewhere_s"]) <= 5,  # type: ignore[index]
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

"""Services benchmarks on a live `up --nodes 3` cluster: parts (a), (b), (c) of bench/services.py.

(a) programming latency: a web replica's readiness is flipped (its readiness file removed,
    then restored) round after round; from the pod's Ready condition lastTransitionTime (the
    agent's moment of seeing it) to the moment each node's nftables table no longer holds,
    or again holds, the endpoint (every node polled every ~20 ms); p50/p99 of the slowest
    node ("every node updated") and of all nodes;
(b) throughput through the data path: HTTP/1.0 GETs (a new connection each) from a client
    pod's network namespace, `concurrency` at once for `seconds`, to a Service whose one
    endpoint is pod P (through its ClusterIP) and straight to P's IP, alternating rounds;
    requests/s and p50/p99 latency of each, and their ratio;
(d) DNS lookups from the client pod: A queries for the Service's FQDN to the node's DNS
    server (the pods' nameserver), one after another; p50/p99.

The load generator and DNS client are this process, its sockets made inside the client pod's
network namespace (setns in a short-lived thread), so nothing but the data path under test
sits between them and the servers. Everything is removed at the end (`down`).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import statistics
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from bench.common import ms, percentile
from tests.fixtures.cluster import LocalClusterRun

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:stable
        command:
        - sh
        - -c
        - >-
          mkdir -p /www && echo hello > /www/index.html && touch /www/ready
          && exec httpd -f -p 8080 -h /www
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers:
  - name: main
    image: busybox:stable
    command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
"""
ONE = """\
apiVersion: v1
kind: Service
metadata: {{name: one}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: one-1, labels: {{kubernetes.io/service-name: one}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: ["{ip}"]}}]
"""


class Live:
    def __init__(self, cluster: LocalClusterRun) -> None:
        self.cluster = cluster

    def cli(self, *args: str) -> str:
        done = self.cluster.cli(*args)
        if done.returncode != 0:
            raise RuntimeError(f"pilothouse {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.cli("get", *args, "-o", "json")))

    def apply(self, text: str) -> None:
        path = self.cluster.data_dir.parent / "bench.yaml"
        path.write_text(text)
        self.cli("apply", "-f", str(path))

    def pods(self) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.json("pods").get("items", [])}

    def wait(self, what: str, check: Any, within: float = 120) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if found := check():
                return found
            time.sleep(0.3)
        raise RuntimeError(f"{what} did not happen within {within:.0f} s")

    def runc(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        root = self.cluster.layout.node(node) / "runtime" / "runc"
        return subprocess.run(["runc", "--root", str(root), *args], capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def container(self, node: str, pod: str) -> str:
        ids = [c for c in self.runc(node, "list", "-q").stdout.split() if f"_{pod}_" in c]
        return sorted(ids)[-1]

    def netns_of(self, node: str, pod: str) -> str:
        state = json.loads(self.runc(node, "state", self.container(node, pod)).stdout)
        return f"/proc/{state['pid']}/ns/net"

    def node_netns(self, node: str) -> str:
        return f"/run/netns/ph-{self.cluster.layout.cluster_id}-{node}"


def socket_in(netns: str, kind: socket.SocketKind) -> socket.socket:
    made: list[Any] = []

    def enter() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if _LIBC.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, kind))
        except BaseException as error:
            made.append(error)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


# -- (a) ------------------------------------------------------------------------------------


def _routes(netns: str, ip: str) -> bool:
    listing = subprocess.run(["nsenter", f"--net={netns}", "--", "nft", "list", "table", "ip",
                              "pilothouse"], capture_output=True, text=True).stdout  # fmt: skip
    return f"__{ip}/8080" in listing


def _seen_at(netns: str, ip: str, *, want: bool, within: float) -> float:
    deadline = time.time() + within
    while time.time() < deadline:
        if _routes(netns, ip) == want:
            return time.time()
        time.sleep(0.02)
    raise RuntimeError(f"{netns} did not {'add' if want else 'drop'} {ip} in {within:.0f} s")


def _transition(pod: dict[str, Any]) -> tuple[bool, float]:
    """(Ready, since when) of a pod as `get -o json` shows it."""
    for c in pod.get("status", {}).get("conditions", []):
        if c["type"] == "Ready":
            stamp = c["lastTransitionTime"].replace("Z", "+00:00")
            return c["status"] == "True", datetime.fromisoformat(stamp).timestamp()
    return False, 0.0


def _watch_all(nodes: dict[str, str], ip: str, *, want: bool) -> dict[str, float]:
    """When each node's table came to hold (`want`) or drop `ip`, watched side by side."""
    results: dict[str, float] = {}

    def watch(node: str, netns: str) -> None:
        results[node] = _seen_at(netns, ip, want=want, within=30)

    threads = [threading.Thread(target=watch, args=item) for item in nodes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != len(nodes):
        raise RuntimeError(f"not every node changed its table for {ip}: {results}")
    return results


def programming(live: Live, *, flips: int) -> dict[str, object]:
    nodes = {n: live.node_netns(n) for n in ("node-1", "node-2", "node-3")}
    every, each = [], []
    web = sorted(n for n in live.pods() if n.startswith("web-"))
    for i in range(flips):
        name = web[i % len(web)]
        pod = live.pods()[name]
        node, ip = pod["spec"]["nodeName"], pod["status"]["podIP"]
        want = not _transition(pod)[0]  # ready -> unready, unready -> ready
        live.runc(node, "exec", live.container(node, name), "touch" if want else "rm",
                  "/www/ready")  # fmt: skip
        results = _watch_all(nodes, ip, want=want)
        flipped = live.wait("the Ready condition", lambda n=name, w=want: (
            (s := _transition(live.pods()[n]))[0] == w and s[1]))  # fmt: skip
        lags = [results[n] - flipped for n in nodes]
        every.append(max(lags))
        each.extend(lags)
    return {
        "flips": flips,
        "every_node_p50_ms": ms(percentile(every, 50)),
        "every_node_p99_ms": ms(percentile(every, 99)),
        "each_node_p50_ms": ms(percentile(each, 50)),
        "each_node_p99_ms": ms(percentile(each, 99)),
        "goal_p99_ms": 1000,
    }


# -- (b) ------------------------------------------------------------------------------------


async def _get(netns: str, ip: str, port: int) -> float:
    sock = socket_in(netns, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        await loop.sock_connect(sock, (ip, port))
        await loop.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
        while await loop.sock_recv(sock, 65536):
            pass
    finally:
        sock.close()
    return time.perf_counter() - started


async def _load(
    netns: str, ip: str, port: int, *, seconds: float, concurrency: int
) -> tuple[int, list[float]]:
    end = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            try:
                latencies.append(await _get(netns, ip, port))
            except OSError:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors, latencies


def throughput(live: Live, *, seconds: float, concurrency: int, rounds: int) -> dict[str, object]:
    pods = live.pods()
    target = next(p for n, p in sorted(pods.items()) if n.startswith("web-"))
    live.apply(ONE.format(ip=target["status"]["podIP"]))
    cluster_ip = live.json("svc", "one")["spec"]["clusterIP"]
    netns = live.netns_of("node-1", "client")
    paths = {"cluster_ip": (cluster_ip, 80), "pod_ip": (target["status"]["podIP"], 8080)}
    found: dict[str, list[tuple[float, list[float], int]]] = {k: [] for k in paths}
    for _ in range(rounds):
        for name, (ip, port) in paths.items():
            started = time.perf_counter()
            errors, lat = asyncio.run(_load(netns, ip, port, seconds=seconds,
                                            concurrency=concurrency))  # fmt: skip
            found[name].append((time.perf_counter() - started, lat, errors))
    out: dict[str, object] = {"seconds": seconds, "concurrency": concurrency, "rounds": rounds,
                              "target_node": target["spec"]["nodeName"]}  # fmt: skip
    for name, runs in found.items():
        rates = [len(lat) / took for took, lat, _ in runs]
        every = [x for _, lat, _ in runs for x in lat]
        out[name] = {
            "requests_per_s": round(statistics.median(rates), 1),
            "p50_ms": ms(percentile(every, 50)),
            "p99_ms": ms(percentile(every, 99)),
            "errors": sum(e for _, _, e in runs),
        }
    ratio = out["cluster_ip"]["requests_per_s"] / out["pod_ip"]["requests_per_s"]  # type: ignore[index]
    out["ratio"] = round(ratio, 3)
    out["goal_ratio"] = 0.9
    return out


# -- (c) ------------------------------------------------------------------------------------


def lookups(live: Live, *, count: int) -> dict[str, object]:
    netns = live.netns_of("node-1", "client")
    resolv = live.runc("node-1", "exec", live.container("node-1", "client"), "cat",
                       "/etc/resolv.conf").stdout  # fmt: skip
    server = next(line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver"))
    sock = socket_in(netns, socket.SOCK_DGRAM)
    query = dns.message.make_query("web.default.svc.cluster.local", "A")
    took = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            answer = dns.query.udp(query, server, timeout=2, sock=sock)
            took.append(time.perf_counter() - started)
            if not answer.answer:
                raise RuntimeError(f"no answer from {server}: {answer}")
    finally:
        sock.close()
    return {
        "lookups": count,
        "server": server,
        "p50_ms": round(percentile(took, 50) * 1000, 3),
        "p99_ms": round(percentile(took, 99) * 1000, 3),
        "goal_p50_ms": 2,
    }


def _settled(live: Live) -> bool:
    pods = live.pods()
    ready = sum(1 for n, p in pods.items() if n.startswith("web-") and _transition(p)[0])
    return ready == 3 and pods.get("client", {}).get("status", {}).get("phase") == "Running"


def run(parts: str, *, root: Path, flips: int, seconds: float, concurrency: int, rounds: int,
        count: int) -> dict[str, object]:  # fmt: skip
    cluster = LocalClusterRun(root)
    results: dict[str, object] = {}
    try:
        started = cluster.up(nodes=3)
        if started.returncode != 0:
            raise RuntimeError(f"up failed: {started.stderr[-2000:]}")
        live = Live(cluster)
        live.apply(WEB)
        live.wait("3 web replicas Ready and the client Running", lambda: _settled(live))
        if "a" in parts:
            results["a"] = programming(live, flips=flips)
        if "b" in parts:
            results["b"] = throughput(live, seconds=seconds, concurrency=concurrency, rounds=rounds)
        if "c" in parts:
            results["c"] = lookups(live, count=count)
    finally:
        try:
            cluster.down()
        finally:
            cluster.force_clean()
    return results

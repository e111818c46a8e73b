"""What the Services end-to-end tests share: one `up --nodes 3` cluster and ways to send
requests as users do, from a pod (runc exec busybox wget), from a node's own network (its
namespace), and from this machine; and a DNS resolver a test runs inside a node's namespace.

Every request goes only to addresses inside the cluster's namespaces (pod IPs, ClusterIPs,
the nodes' bridge addresses); nothing leaves the machine.
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset

from tests.fixtures.cluster import LocalClusterRun, wait_for
from tests.integration.servicesnet import socket_in

BUSYBOX = "/bin/busybox"

# A web server that serves its pod's name on :8080 and, on SIGTERM, stops at once (so any
# request routed to it after SIGTERM fails: the tests see a drain that came too late). It is
# ready while it serves /ready (a test removes /www/ready to make it unready).
WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: httpd
        image: busybox:stable
        command:
        - sh
        - -c
        - >-
          mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && touch /www/ready
          && httpd -f -p 8080 -h /www & pid=$!; trap 'kill $pid; exit 0' TERM; wait
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http, nodePort: 30080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""

CLIENT = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:stable
    # A shell as PID 1 that reaps what `timeout` leaves behind (sleep would collect zombies
    # until the pids limit stops every fork).
    command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
"""

# Sends requests to $1 for $2 seconds; prints "ok=N fail=M" and, for each failed request,
# "F <uptime when it was sent>" (the machine's uptime: the same clock as /proc/uptime outside
# the container). A request fails when it is refused or reset, or has no answer within 3 s
# (a SYN retransmitted once, 1 s, on a busy machine is slow, not failed).
LOAD = """\
ok=0; fail=0; end=$(( $(date +%s) + $2 ))
while [ $(date +%s) -lt $end ]; do
  sent=$(cut -d' ' -f1 /proc/uptime)
  if why=$(timeout 3 wget -q -O /dev/null "$1" 2>&1); then ok=$((ok+1));
  else fail=$((fail+1)); echo "F $sent ${why:-no answer in 3 s}" | tr -s '\n' ' '; echo; fi
done
echo "ok=$ok fail=$fail"
"""


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


@dataclass
class Load:
    """What one or more LOAD loops saw."""

    ok: int = 0
    fail: int = 0
    failures: list[float] = field(default_factory=list)  # uptime each failed request was sent
    reasons: list[str] = field(default_factory=list)  # what wget said of each
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return (self.ok + self.fail) / self.seconds if self.seconds else 0.0


class Services:
    """The cluster as the tests use it (see the module docstring)."""

    def __init__(self, cluster: LocalClusterRun) -> None:
        self.cluster = cluster
        self.nodes = {name: address.rpartition(":")[0] for name, address in cluster.nodes().items()}

    # -- the CLI ----------------------------------------------------------------------------

    def apply(self, text: str, *, name: str = "manifest.yaml") -> subprocess.CompletedProcess[str]:
        return self.cluster.apply(text, name=name)

    def must(self, *args: str) -> str:
        done = self.cluster.cli(*args)
        assert done.returncode == 0, f"`pilothouse {' '.join(args)}` failed:\n{done.stderr}"
        return done.stdout

    def items(self, *args: str) -> list[dict[str, object]]:
        out = self.must("get", *args, "-o", "json")
        data = json.loads(out) if out.strip() else {}
        return list(data.get("items", [data] if data else []))

    def cluster_ip(self, service: str) -> str:
        (svc,) = self.items("svc", service)
        return str(svc["spec"]["clusterIP"])  # type: ignore[index]

    def pods(self, prefix: str = "web-") -> dict[str, dict[str, str]]:
        """Running pods named `prefix`…: name -> {"node", "ip", "ready"}."""
        found = {}
        for pod in self.items("pods"):
            meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
            name = meta["name"]  # type: ignore[index]
            if not str(name).startswith(prefix) or "deletionTimestamp" in meta:  # type: ignore[operator]
                continue
            if status.get("phase") != "Running":  # type: ignore[union-attr]
                continue
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in status.get("conditions", [])  # type: ignore[union-attr]
            )
            found[str(name)] = {
                "node": str(spec.get("nodeName", "")),  # type: ignore[union-attr]
                "ip": str(status.get("podIP", "")),  # type: ignore[union-attr]
                "ready": "yes" if ready else "",
            }
        return found

    def ready_endpoints(self, service: str) -> set[str]:
        found = set()
        for eps in self.items("endpointslices", "-l", f"kubernetes.io/service-name={service}"):
            for ep in eps.get("endpoints", []):  # type: ignore[union-attr]
                if ep.get("conditions", {}).get("ready", True):
                    found.update(ep["addresses"])
        return found

    # -- requests ---------------------------------------------------------------------------

    def runc_root(self, node: str) -> Path:
        return self.cluster.layout.node(node) / "runtime" / "runc"

    def container(self, node: str, pod: str) -> str:
        def listed() -> tuple[list[str]] | None:
            # `runc list` fails while a container's state is being written (pods stopping).
            done = subprocess.run(
                ["runc", "--root", str(self.runc_root(node)), "list", "-q"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            return (done.stdout.split(),) if done.returncode == 0 else None

        (got,) = wait_for(f"`runc list` on {node}", listed, within=10)
        ids = [c for c in got if f"_{pod}_" in c]
        assert ids, f"pod {pod} has no container on {node}"
        return sorted(ids)[-1]

    def exec(
        self, node: str, pod: str, *argv: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", str(self.runc_root(node)), "exec", self.container(node, pod), *argv],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def from_pod(self, node: str, pod: str, url: str, count: int) -> collections.Counter[str]:
        """`count` GETs of `url` from inside `pod`: who answered how often ("FAIL": none)."""
        loop = f'for i in $(seq {count}); do timeout 2 wget -q -O- "$0" || echo FAIL; done'
        done = self.exec(node, pod, "sh", "-c", loop, url)
        return _tally(done.stdout)

    def from_node(self, node: str, url: str, count: int) -> collections.Counter[str]:
        """`count` GETs of `url` from the node's own network (its namespace, no pod)."""
        loop = (
            f'for i in $(seq {count}); do timeout 2 {BUSYBOX} wget -q -O- "$0" || echo FAIL; done'
        )
        done = subprocess.run(
            ["nsenter", f"--net={self.netns_path(node)}", "--", BUSYBOX, "sh", "-c", loop, url],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return _tally(done.stdout)

    def from_host(self, url: str, count: int) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(count):
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    seen.update(_tally(answer.read().decode()))
            except OSError:
                seen["FAIL"] += 1
        return seen

    def load(self, node: str, pod: str, url: str, *, seconds: int, loops: int) -> Load:
        """`loops` LOAD loops at once from `pod` for `seconds` (run in threads; returns when
        they are done)."""
        results: list[str] = []

        def one() -> None:
            done = self.exec(node, pod, "sh", "-c", LOAD, "load", url, str(seconds),
                             timeout=seconds + 60)  # fmt: skip
            results.append(done.stdout)

        threads = [threading.Thread(target=one) for _ in range(loops)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out = Load(seconds=time.monotonic() - started)
        for text in results:
            for line in text.splitlines():
                if line.startswith("F "):
                    out.failures.append(float(line.split()[1]))
                    out.reasons.append(line.split(maxsplit=2)[2] if line.count(" ") > 1 else "")
                elif line.startswith("ok="):
                    ok, fail = (int(part.split("=")[1]) for part in line.split())
                    out.ok, out.fail = out.ok + ok, out.fail + fail
        assert len(results) == loops and all("ok=" in r for r in results), (
            f"a request loop did not finish; its output ends: {[r[-300:] for r in results]}"
        )
        return out

    # -- nodes ------------------------------------------------------------------------------

    def netns(self, node: str) -> str:
        return f"ph-{self.cluster.layout.cluster_id}-{node}"

    def netns_path(self, node: str) -> str:
        return f"/run/netns/{self.netns(node)}"

    def set_link(self, node: str, *, up: bool) -> None:
        from pilothouse.cli.cluster import netns as hosts

        link = hosts.HostNetwork.link(self.cluster.layout.cluster_id, node)
        subprocess.run(["ip", "link", "set", link, "up" if up else "down"], check=True, timeout=30)


def _tally(text: str) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("hello from "):
            seen[line.removeprefix("hello from ")] += 1
        elif line == "FAIL":
            seen["FAIL"] += 1
    return seen


class Resolver:
    """A DNS server on 127.0.0.1:53 inside a node's namespace that knows one A record
    (everything else NXDOMAIN): the node's upstream, under the test's control."""

    def __init__(self, netns: str, *, name: str, address: str) -> None:
        import socket

        self.name, self.address = name.rstrip(".") + ".", address
        self.queries = 0
        self._sock = socket_in(netns, socket.SOCK_DGRAM)
        self._sock.setblocking(True)
        self._sock.settimeout(0.2)
        self._sock.bind(("127.0.0.1", 53))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-resolver", daemon=True)

    def __enter__(self) -> Resolver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(wire)
            self.queries += 1
            reply = dns.message.make_response(query)
            question = query.question[0]
            if question.name.to_text().lower() == self.name and question.rdtype == 1:
                reply.answer.append(dns.rrset.from_text(self.name, 30, "IN", "A", self.address))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(reply.to_wire(), client)


@dataclass
class Clients:
    """One client pod per node (client-1 on node-1 …)."""

    by_node: dict[str, str]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.by_node.items())

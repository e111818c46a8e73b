"""Services on `pilothouse up --nodes 3` (network namespaces, CNI, mutual TLS), as users see them.

One cluster for the module (its tests run in order and clean up what they add): a Deployment
of 3 httpd replicas behind a NodePort Service `web` and a headless `web-headless`, and a
client pod on each node. Checked through the CLI and real traffic:
- 300 requests from a pod on each node spread over the three replicas; likewise through the
  NodePort from this machine and from each node; each replica reaches its own Service;
- a replica whose readiness fails gets no traffic; scaled to 0 the ClusterIP refuses at once,
  scaled back it serves;
- DNS from a pod: the Service's name and FQDN, the headless Service's pod IPs, SRV, and a name
  outside the cluster: SERVFAIL while the node has no resolvers, the node's resolver's answer
  once it has one (a resolver this test runs in the node's namespace);
- a rolling update (maxUnavailable 0) under 4 request loops from a pod: no failed request;
  with a node cut off mid-rollout, once its pods leave the Service no request fails (the cut
  node's pods are evicted: later tests use node-1's client);
- bad Services refused with their field paths, or handled as Kubernetes does.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.network import missing_support
from tests.e2e.services_support import CLIENT, WEB, Resolver, Services, wait_for
from tests.fixtures.cluster import LocalClusterRun, missing_for_local_cluster

pytestmark = [pytest.mark.root, pytest.mark.slow]

NODES = ("node-1", "node-2", "node-3")
REQUESTS = 300


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    if reason := missing_for_local_cluster() or missing_support():
        pytest.skip(reason)
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (apt-get install nftables)")
    cluster = LocalClusterRun(tmp_path_factory.mktemp("services"))
    try:
        started = cluster.up(nodes=3)
        assert started.returncode == 0, f"`up -d --nodes 3` failed:\n{started.stderr}"
        services = Services(cluster)
        assert services.apply(WEB.format(replicas=3), name="web.yaml").returncode == 0
        for i, node in enumerate(NODES, start=1):
            done = services.apply(CLIENT.format(name=f"client-{i}", node=node), name=f"c{i}.yaml")
            assert done.returncode == 0, done.stderr
        wait_for("3 web replicas Ready", lambda: _ready_web(services, 3), within=120)
        wait_for("3 client pods Running", lambda: len(services.pods("client-")) == 3)
        yield services
    finally:
        try:
            cluster.down()
        finally:
            cluster.force_clean()


def _ready_web(svc: Services, count: int) -> bool:
    pods = svc.pods()
    ips = {p["ip"] for p in pods.values() if p["ready"]}
    return len(ips) == count and svc.ready_endpoints("web") == ips


def _spread(seen: object, replicas: set[str], *, what: str) -> None:
    got = dict(seen)  # type: ignore[call-overload]
    assert got.get("FAIL", 0) == 0, f"{what}: {got.get('FAIL')} of {REQUESTS} requests failed"
    assert set(got) == replicas, f"{what} did not reach every replica: {got}"
    assert min(got.values()) >= REQUESTS // 6, f"{what} is lopsided: {got}"


def test_requests_spread_over_replicas_from_pods_nodes_and_this_machine(svc: Services) -> None:
    replicas = set(svc.pods())
    ip = svc.cluster_ip("web")
    for i, node in enumerate(NODES, start=1):
        seen = svc.from_pod(node, f"client-{i}", f"http://{ip}/", REQUESTS)
        _spread(seen, replicas, what=f"the ClusterIP from a pod on {node}")
    for node, address in svc.nodes.items():
        _spread(
            svc.from_host(f"http://{address}:30080/", REQUESTS),
            replicas,
            what=f"the NodePort of {node} from this machine",
        )
        _spread(
            svc.from_node(node, f"http://{address}:30080/", REQUESTS),
            replicas,
            what=f"the NodePort from {node} itself",
        )
    _spread(
        svc.from_node("node-2", f"http://{ip}/", REQUESTS),
        replicas,
        what="the ClusterIP from node-2's own network",
    )


def test_a_pod_reaches_its_own_service(svc: Services) -> None:
    ip = svc.cluster_ip("web")
    for name, pod in svc.pods().items():
        seen = svc.from_pod(pod["node"], name, f"http://{ip}/", 30)
        assert seen.get("FAIL", 0) == 0, f"{name} could not reach its own Service: {seen}"
        assert seen.get(name, 0) > 0, f"{name} was never answered by itself (hairpin): {seen}"


def test_an_unready_replica_gets_no_traffic(svc: Services) -> None:
    name, pod = sorted(svc.pods().items())[0]
    ip = svc.cluster_ip("web")
    assert svc.exec(pod["node"], name, "rm", "/www/ready").returncode == 0
    try:
        wait_for(
            f"{name} out of the Service's ready endpoints",
            lambda: pod["ip"] not in svc.ready_endpoints("web"),
            within=15,
        )
        seen = svc.from_pod("node-1", "client-1", f"http://{ip}/", 100)
        assert seen.get("FAIL", 0) == 0 and name not in seen, f"the unready {name} served: {seen}"
    finally:
        svc.exec(pod["node"], name, "touch", "/www/ready")
    wait_for(f"{name} ready again", lambda: pod["ip"] in svc.ready_endpoints("web"), within=15)


def test_scaled_to_zero_the_cluster_ip_refuses_at_once_and_serves_again(svc: Services) -> None:
    ip = svc.cluster_ip("web")
    svc.must("scale", "deployment/web", "--replicas", "0")
    try:
        scaled = time.monotonic()

        def refused() -> float | None:
            began = time.monotonic()
            done = svc.exec("node-1", "client-1", "timeout", "5", "wget", "-q", "-O-",
                            f"http://{ip}/")  # fmt: skip
            took = time.monotonic() - began
            return took if done.returncode != 0 and "refused" in done.stderr else None

        # "refused", not a 5 s timeout: the empty Service rejects at once.
        wait_for("the ClusterIP refusing", refused, within=15)
        print(f"\nscaled to 0 -> ClusterIP refuses: {time.monotonic() - scaled:.2f} s")
    finally:
        svc.must("scale", "deployment/web", "--replicas", "3")
    wait_for("3 web replicas Ready again", lambda: _ready_web(svc, 3), within=120)
    seen = svc.from_pod("node-2", "client-2", f"http://{ip}/", 30)
    assert seen.get("FAIL", 0) == 0, f"the scaled-back Service failed requests: {seen}"


def test_dns_from_a_pod(svc: Services) -> None:
    ip = svc.cluster_ip("web")

    def lookup(*args: str) -> str:
        done = svc.exec("node-1", "client-1", "nslookup", *args, timeout=30)
        return done.stdout + done.stderr

    for name in ("web", "web.default.svc.cluster.local"):
        assert f"Address: {ip}" in lookup(name), f"{name} did not resolve to {ip}"
    # <svc>.<ns> through the search list (ndots:5), as a program's resolver walks it.
    page = svc.exec(
        "node-1", "client-1", "timeout", "5", "wget", "-q", "-O-", "http://web.default/"
    )
    assert page.stdout.startswith("hello from "), f"http://web.default/ failed: {page.stderr}"
    headless = lookup("web-headless.default.svc.cluster.local")
    pod_ips = {p["ip"] for p in svc.pods().values()}
    for address in pod_ips:
        assert f"Address: {address}" in headless, f"headless answer lacks {address}: {headless}"
    srv = lookup("-type=SRV", "_http._tcp.web.default.svc.cluster.local")
    assert "0 100 80 web.default.svc.cluster.local" in srv, srv
    assert "SERVFAIL" in lookup("example.test"), "a name outside the cluster did not SERVFAIL"
    resolv = svc.cluster.layout.node("node-1") / "resolv.conf"
    kept = resolv.read_text()
    with Resolver(svc.netns("node-1"), name="example.test", address="192.0.2.99") as upstream:
        resolv.write_text(kept + "nameserver 127.0.0.1\n")
        try:
            answer = wait_for(
                "example.test answered through node-1's resolver",
                lambda: (out := lookup("example.test")) and "192.0.2.99" in out and out,
                within=20,
            )
        finally:
            resolv.write_text(kept)
    assert upstream.queries >= 1 and "Address: 192.0.2.99" in answer, answer


def load_in_background(svc: Services, url: str, *, loops: int) -> Callable[[], object]:
    """Start node-1's client-1 loading `url` for 30 s with `loops` loops, in a thread; the
    call returned waits for it and answers the Load."""
    done: list[object] = []
    loader = threading.Thread(
        target=lambda: done.append(svc.load("node-1", "client-1", url, seconds=30, loops=loops))
    )
    loader.start()

    def finished() -> object:
        loader.join()
        (load,) = done
        return load

    return finished


def test_a_rolling_update_drops_no_request(svc: Services) -> None:
    ip = svc.cluster_ip("web")
    before = set(svc.pods())

    finished = load_in_background(svc, f"http://{ip}/", loops=4)
    time.sleep(3)
    svc.must("set", "image", "deployment/web", "httpd=busybox:latest")
    svc.must("rollout", "status", "deployment/web", "--timeout", "120s")
    load = finished()
    after = set(svc.pods())
    assert not before & after, f"the rollout did not replace the pods: {before} -> {after}"
    print(f"\nrollout under load: {load.ok} ok, {load.fail} failed, {load.rate:.0f} req/s")  # type: ignore[attr-defined]
    # Requests went on through the rollout (how many a second depends on the machine's load).
    assert load.ok >= 100, f"the client made only {load.ok} requests"  # type: ignore[attr-defined]
    assert load.fail == 0, f"{load.fail} requests failed during the rolling update"  # type: ignore[attr-defined]


def test_a_node_cut_off_mid_rollout_stops_costing_requests_once_its_pods_leave_the_service(
    svc: Services,
) -> None:
    """Cut a serving node off mid-rollout: the control plane declares it dead, its pods leave
    the Service's endpoints and every node's rules, and then no request fails. (How soon that
    happens is bench/heal.py's node-loss figure; a deadline here would be the machine's load.)"""
    ip = svc.cluster_ip("web")
    before = set(svc.pods())
    svc.must("set", "image", "deployment/web", "httpd=busybox:stable")
    wait_for("the rollout's first new pod", lambda: set(svc.pods()) - before, within=30)
    # The node to cut: one (not the client's) whose replica the Service routes to now.
    serving = svc.ready_endpoints("web")
    victim = next(
        p["node"] for p in svc.pods().values() if p["node"] != "node-1" and p["ip"] in serving
    )
    gone = {p["ip"] for p in svc.pods().values() if p["node"] == victim}
    svc.set_link(victim, up=False)
    try:
        wait_for(
            f"{victim}'s pods out of the web Service",
            lambda: not svc.ready_endpoints("web") & gone,
            within=90,
        )

        def every_request_answered() -> bool:
            batch = svc.exec("node-1", "client-1", "sh", "-c",
                             f"for i in $(seq 20); do timeout 3 wget -q -O- http://{ip}/ "
                             ">/dev/null || exit 1; done")  # fmt: skip
            return batch.returncode == 0

        wait_for("20 requests in a row answered", every_request_answered, within=90)
        load = svc.load("node-1", "client-1", f"http://{ip}/", seconds=15, loops=2)
    finally:
        svc.set_link(victim, up=True)
    print(f"\n{victim} cut mid-rollout, then: {load.ok} ok, {load.fail} failed")
    assert load.ok > 0 and load.fail == 0, (
        f"with {victim} cut off and its pods out of the Service, {load.fail} of "
        f"{load.ok + load.fail} requests failed"
    )
    svc.must("rollout", "status", "deployment/web", "--timeout", "180s")
    wait_for(f"{victim} Ready again", lambda: victim in _ready_nodes(svc), within=60)
    wait_for("3 web replicas Ready", lambda: _ready_web(svc, 3), within=120)


def _ready_nodes(svc: Services) -> set[str]:
    return {
        str(n["metadata"]["name"])  # type: ignore[index]
        for n in svc.items("nodes")
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])  # type: ignore[union-attr]
        )
    }


BAD = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
{spec}
"""


@pytest.mark.parametrize(
    ("name", "spec", "field", "message"),
    [
        (
            "outside",
            "  clusterIP: 192.168.5.5\n  ports: [{port: 80}]",
            "spec.clusterIP",
            'Invalid value: "192.168.5.5": provided IP is not in the valid range. '
            "The range of valid IPs is 10.96.0.0/16",
        ),
        (
            "taken",
            "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]",
            "spec.ports[0].nodePort",
            "Invalid value: 30080: provided port is already allocated",
        ),
        (
            "zero",
            "  ports: [{port: 0}]",
            "spec.ports[0].port",
            "Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            "twins",
            "  ports: [{name: http, port: 80}, {name: http, port: 81}]",
            "spec.ports[1].name",
            'Duplicate value: "http"',
        ),
    ],
)
def test_bad_services_are_refused_with_the_field_path(
    svc: Services, name: str, spec: str, field: str, message: str
) -> None:
    done = svc.apply(BAD.format(name=name, spec=spec), name=f"bad-{name}.yaml")
    assert done.returncode != 0, f"the bad Service {name} was accepted"
    assert f"{field}: {message}" in done.stderr, done.stderr
    missing = svc.cluster.cli("get", "svc", name)
    assert missing.returncode != 0, f"the refused Service {name} was stored"


def test_a_target_port_name_no_container_has_and_a_selectorless_service(svc: Services) -> None:
    spec = "  selector: {app: web}\n  ports: [{port: 80, targetPort: nosuch}]"
    assert svc.apply(BAD.format(name="nameless", spec=spec), name="nameless.yaml").returncode == 0
    ip = svc.cluster_ip("nameless")
    refused = svc.exec("node-1", "client-1", "timeout", "5", "wget", "-q", "-O-", f"http://{ip}/")
    assert "refused" in refused.stderr, f"no pod serves `nosuch`, yet: {refused.stderr!r}"
    assert re.search(r"Endpoints:\s+<none>", svc.must("describe", "svc", "nameless"))
    spec = "  ports: [{name: http, port: 80, targetPort: 8080}]"
    assert svc.apply(BAD.format(name="manual", spec=spec), name="manual.yaml").returncode == 0
    assert svc.items("endpointslices", "-l", "kubernetes.io/service-name=manual") == [], (
        "a Service without a selector got endpoints of its own"
    )
    target = next(iter(svc.pods().values()))["ip"]
    slice_ = f"""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: manual-1, labels: {{kubernetes.io/service-name: manual}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: ["{target}"]}}]
"""
    assert svc.apply(slice_, name="manual-slice.yaml").returncode == 0
    manual = svc.cluster_ip("manual")
    seen = wait_for(
        "the hand-made endpoint serving the selector-less Service",
        lambda: (
            (s := svc.from_pod("node-1", "client-1", f"http://{manual}/", 3))
            and "FAIL" not in s
            and s
        ),
        within=20,
    )
    assert sum(seen.values()) == 3
    for kind, name in (("svc", "nameless"), ("svc", "manual"), ("endpointslice", "manual-1")):
        svc.must("delete", kind, name)

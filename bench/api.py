"""API benchmark: Apply (create) and Get of Deployments through the gRPC API of a real control
plane with its embedded etcd.

Measures, for N Deployments (default 1,000):
- sequential latency (one call at a time, one client): p50 / p99 / mean of Apply-create, Get
  and Apply-unchanged (a re-apply that writes nothing);
- throughput with C concurrent clients (default 32, each with its own channel): Apply-create
  and Get of another N Deployments;
- List of P pods (default 10,000; created through Apply in a namespace of their own, bound to
  a node that does not exist so no scheduler or agent touches them): the time of one List of
  them all;
- Watch fan-out: W watchers (default 100, each its own stream) of ConfigMaps from the
  resourceVersion of a List; the time from one ConfigMap update until every watcher has seen
  it, over several updates.

Starts `python3 -m controlplane` in a temp dir (or uses `--server ADDR`) and stops it and its
etcd afterwards. Prints a readable summary, then one JSON object on the last line.

    python3 bench/api.py [--count 1000] [--concurrency 32] [--pods 10000] [--watchers 100]
                         [--server HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc

from pilothouse import config as cli_config
from pilothouse import credentials, kinds
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from pilothouse.v1 import objects_pb2

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
RETRIES = 3
RETRIED = (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
LISTED = "bench-list"  # the listed pods' own namespace: no Deployment's controller scans them


def deployment(name: str, *, replicas: int = 0) -> objects_pb2.Deployment:
    d = objects_pb2.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = name
    d.metadata.namespace = NAMESPACE
    d.metadata.labels["app"] = name
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    container = d.spec.template.spec.containers.add()
    container.name = "web"
    container.image = "busybox:stable"
    container.command.extend(["httpd", "-f", "-p", "8080"])
    port = container.ports.add()
    port.container_port = 8080
    container.resources.requests["cpu"] = "100m"
    container.resources.requests["memory"] = "64Mi"
    return d


def pod(name: str) -> objects_pb2.Pod:
    p = objects_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name = name
    p.metadata.namespace = LISTED
    p.metadata.labels["app"] = "listed"
    p.spec.node_name = "bench-nowhere"  # bound: the scheduler leaves it alone
    container = p.spec.containers.add()
    container.name = "web"
    container.image = "busybox:stable"
    container.command.extend(["httpd", "-f", "-p", "8080"])
    container.resources.requests["cpu"] = "100m"
    container.resources.requests["memory"] = "64Mi"
    return p


def configmap(name: str, value: str) -> objects_pb2.ConfigMap:
    c = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
    c.metadata.name = name
    c.metadata.namespace = NAMESPACE
    c.data["value"] = value
    return c


@contextlib.contextmanager
def control_plane(data_dir: Path) -> Iterator[tuple[str, credentials.TlsMaterial | None]]:
    address_file = data_dir / "controlplane.addr"
    log = (data_dir / "controlplane.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "--data-dir", str(data_dir), "--listen",
         "127.0.0.1:0"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (address_file.exists() and address_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the control plane did not start: "
                    + (data_dir / "controlplane.log").read_text()[-2000:]
                )
            time.sleep(0.05)
        # The control plane is secure by default: talk to it as the admin it wrote on start.
        yield address_file.read_text().strip(), admin_tls(data_dir / "admin.conf")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


def admin_tls(path: Path) -> credentials.TlsMaterial | None:
    """The admin credentials of a CLI config file (None: plaintext)."""
    return credentials.from_config(cli_config.resolve(config_path=str(path), environ={}))


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    return {
        "p50_ms": round(pct(50), 3),
        "p99_ms": round(pct(99), 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "ops_per_s": round(len(ordered) / sum(ordered), 1),
    }


async def sequential(call: Callable[[int], Awaitable[object]], count: int) -> dict[str, float]:
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - start)
    return summary(latencies)


async def concurrent(
    calls: list[Callable[[int], Awaitable[object]]], count: int
) -> dict[str, float]:
    """`count` calls spread over one worker per client; throughput over the wall time."""
    latencies: list[float] = []
    next_index = iter(range(count))

    async def worker(call: Callable[[int], Awaitable[object]]) -> None:
        for i in next_index:
            start = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in calls))
    wall = time.perf_counter() - start
    result = summary(latencies)
    result["ops_per_s"] = round(count / wall, 1)
    result["wall_s"] = round(wall, 3)
    return result


async def run(
    address: str,
    *,
    tls: credentials.TlsMaterial | None,
    count: int,
    concurrency: int,
    replicas: int = 0,
    pods: int = 0,
    watchers: int = 0,
) -> dict[str, object]:
    channels = [
        credentials.secure_channel(address, tls) if tls else grpc.aio.insecure_channel(address)
        for _ in range(concurrency)
    ]
    try:
        stubs = [api_grpc.ControlPlaneStub(channel) for channel in channels]
        stub = stubs[0]
        await stub.List(api.ListRequest(kind="deployments"), timeout=30)  # warm the channel
        for name in (NAMESPACE, LISTED):
            namespace = objects_pb2.Namespace(api_version="v1", kind="Namespace")
            namespace.metadata.name = name
            await stub.Apply(api.ApplyRequest(object=kinds.wrap(namespace)), timeout=30)

        def apply(s: api_grpc.ControlPlaneStub, prefix: str) -> Callable[[int], Awaitable[object]]:
            async def call(i: int) -> object:
                obj = deployment(f"{prefix}-{i}", replicas=replicas)
                request = api.ApplyRequest(object=kinds.wrap(obj))
                return await s.Apply(request, timeout=30)

            return call

        def get(s: api_grpc.ControlPlaneStub, prefix: str) -> Callable[[int], Awaitable[object]]:
            async def call(i: int) -> object:
                request = api.GetRequest(
                    kind="deployments", namespace=NAMESPACE, name=f"{prefix}-{i}"
                )
                return await s.Get(request, timeout=30)

            return call

        results: dict[str, object] = {}
        results["sequential_apply_create"] = await sequential(apply(stub, "seq"), count)
        results["sequential_get"] = await sequential(get(stub, "seq"), count)
        results["sequential_apply_unchanged"] = await sequential(apply(stub, "seq"), count)
        results["concurrent_apply_create"] = await concurrent(
            [apply(s, "par") for s in stubs], count
        )
        results["concurrent_get"] = await concurrent([get(s, "par") for s in stubs], count)
        listing = await stub.List(api.ListRequest(kind="deployments", namespace=NAMESPACE))
        if len(listing.items) != 2 * count:
            raise RuntimeError(f"expected {2 * count} deployments, found {len(listing.items)}")
        for name, value in results.items():
            print(f"{name:28} {value}", flush=True)
        if pods:
            results["list_pods"] = await stage(list_pods(stubs, pods))
        if watchers:
            results["watch_fanout"] = await stage(watch_fanout(address, tls, stub, watchers))
        return results
    finally:
        for channel in channels:
            await channel.close()


async def stage(measured: Awaitable[dict[str, float]]) -> dict[str, object]:
    """A stage's figures, or the error that stopped it (the other stages' figures stand)."""
    try:
        result: dict[str, object] = dict(await measured)
    except grpc.aio.AioRpcError as error:
        result = {"error": f"{error.code().name}: {error.details()}"}
    except (RuntimeError, TimeoutError) as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    print(f"{'':28} {result}", flush=True)
    return result


async def list_pods(stubs: list[api_grpc.ControlPlaneStub], count: int) -> dict[str, float]:
    """Create `count` pods (concurrently), then time Lists of all of them."""

    def create(s: api_grpc.ControlPlaneStub) -> Callable[[int], Awaitable[object]]:
        async def call(i: int) -> object:
            request = api.ApplyRequest(object=kinds.wrap(pod(f"listed-{i}")))
            for attempt in range(RETRIES):
                try:
                    return await s.Apply(request, timeout=120)
                except grpc.aio.AioRpcError as error:  # as a client would: Apply is idempotent
                    if error.code() not in RETRIED or attempt == RETRIES - 1:
                        raise
                    retried.append(error.code().name)
            raise AssertionError("unreachable")

        return call

    retried: list[str] = []
    created = await concurrent([create(s) for s in stubs], count)
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        listing = await stubs[0].List(api.ListRequest(kind="pods", namespace=LISTED), timeout=60)
        seconds.append(time.perf_counter() - start)
        if len(listing.items) != count:
            raise RuntimeError(f"expected {count} pods, found {len(listing.items)}")
    result = summary(seconds)
    result["pods"] = count
    result["create_ops_per_s"] = created["ops_per_s"]
    result["create_p99_ms"] = created["p99_ms"]
    result["create_retried"] = len(retried)
    return result


async def watch_fanout(
    address: str,
    tls: credentials.TlsMaterial | None,
    stub: api_grpc.ControlPlaneStub,
    watchers: int,
    updates: int = 20,
) -> dict[str, float]:
    """`watchers` Watch streams of ConfigMaps; per update, the time until all have seen it."""
    await stub.Apply(api.ApplyRequest(object=kinds.wrap(configmap("fanout", "0"))), timeout=30)
    listing = await stub.List(api.ListRequest(kind="configmaps", namespace=NAMESPACE))
    channel = (
        credentials.secure_channel(address, tls) if tls else grpc.aio.insecure_channel(address)
    )
    watch_stub = api_grpc.ControlPlaneStub(channel)
    seen: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in range(watchers)]

    async def watcher(queue: asyncio.Queue[str]) -> None:
        request = api.WatchRequest(
            kind="configmaps", namespace=NAMESPACE, resource_version=listing.resource_version
        )
        try:
            async for event in watch_stub.Watch(request):
                queue.put_nowait(kinds.unwrap(event.object).data["value"])
        except grpc.aio.AioRpcError as error:
            queue.put_nowait(f"watch ended: {error.code().name}: {error.details()}")

    tasks = [asyncio.create_task(watcher(queue)) for queue in seen]
    try:
        seconds = []
        for i in range(1, updates + 1):
            value = str(i)
            start = time.perf_counter()
            await stub.Apply(
                api.ApplyRequest(object=kinds.wrap(configmap("fanout", value))), timeout=30
            )
            for queue in seen:
                while (got := await asyncio.wait_for(queue.get(), 30)) != value:
                    if got.startswith("watch ended"):
                        raise RuntimeError(got)
            seconds.append(time.perf_counter() - start)
        result = summary(seconds)
        result["watchers"] = watchers
        del result["ops_per_s"]
        return result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="replicas per Deployment (default 0: the API alone; with N the controllers also "
        "create N pending pods per Deployment while the API is measured)",
    )
    parser.add_argument("--pods", type=int, default=10000, help="pods to List (0: skip)")
    parser.add_argument("--watchers", type=int, default=100, help="Watch fan-out (0: skip)")
    parser.add_argument("--server", help="an existing control plane; default: start one")
    parser.add_argument(
        "--config", type=Path, help="with --server: the admin config (default: plaintext)"
    )
    args = parser.parse_args()

    def bench(address: str, tls: credentials.TlsMaterial | None) -> dict[str, object]:
        return asyncio.run(
            run(
                address,
                tls=tls,
                count=args.count,
                concurrency=args.concurrency,
                pods=args.pods,
                watchers=args.watchers,
            )
        )

    if args.server:
        results = bench(args.server, admin_tls(args.config) if args.config else None)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp,
            control_plane(Path(tmp)) as (address, tls),
        ):
            results = bench(address, tls)
    report = {
        "benchmark": "api",
        "deployments": args.count,
        "concurrency": args.concurrency,
        "replicas_per_deployment": args.replicas,
        "pods_listed": args.pods,
        "watchers": args.watchers,
        "store": "etcd (embedded)" if not args.server else "given server",
        "transport": "mTLS" if not args.server or args.config else "plaintext",
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **results,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

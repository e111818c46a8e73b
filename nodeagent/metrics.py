"""The node agent's Prometheus metrics, in a registry of its own (`REGISTRY`).

Names follow Prometheus' conventions: `pilothouse_` prefix, base units, `_total` for counters,
`_seconds` for durations. What is measured:
- per container of this node's pods (from the usage sampler's latest pass, `observe`):
  `pilothouse_container_cpu_usage_cores`, `pilothouse_container_memory_working_set_bytes`,
  `pilothouse_container_restarts_total`; per pod `pilothouse_pod_network_receive_bytes_total`
  and `..._transmit_bytes_total`; the node's `pilothouse_node_cpu_usage_cores` and
  `pilothouse_node_memory_working_set_bytes`;
- `pilothouse_probe_results_total{probe, result}`: each probe check (liveness, readiness,
  startup; success or failure);
- `pilothouse_image_pulls_total{result}` and `pilothouse_image_pull_duration_seconds`.

Invariants: the metric objects are made here, once, at import (the library's way; nothing
registers itself anywhere else, and this registry is served only when main wires a
`MetricsServer` for --metrics-listen); recording never fails the caller; per-pod series come
from the latest sample only, so a pod that left the node leaves the metrics with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.process.metricserver import MetricsServer

REGISTRY = CollectorRegistry(auto_describe=True)

PROBE_RESULTS = Counter(
    "pilothouse_probe_results",
    "Probe checks of containers, by probe (liveness, readiness, startup) and result.",
    ["probe", "result"],
    registry=REGISTRY,
)
IMAGE_PULLS = Counter(
    "pilothouse_image_pulls",
    "Image pulls (or checks of an image already present), by result (success, failure).",
    ["result"],
    registry=REGISTRY,
)
IMAGE_PULL_SECONDS = Histogram(
    "pilothouse_image_pull_duration_seconds",
    "How long getting a container's image took, when it was pulled.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)


class _Usage(Collector):
    """The usage sampler's latest pass, as gauges and counters."""

    def __init__(self) -> None:
        self.node: Any = None
        self.pods: Sequence[Any] = ()

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "pod", "container"]
        cpu = GaugeMetricFamily(
            "pilothouse_container_cpu_usage_cores",
            "CPU a container used over the last sampling interval, in cores.",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "pilothouse_container_memory_working_set_bytes",
            "A container's memory working set (usage minus inactive file pages).",
            labels=labels,
        )
        restarts = CounterMetricFamily(
            "pilothouse_container_restarts",
            "How often a container was restarted.",
            labels=labels,
        )
        rx = CounterMetricFamily(
            "pilothouse_pod_network_receive_bytes",
            "Bytes a pod received on its network interface.",
            labels=["namespace", "pod"],
        )
        tx = CounterMetricFamily(
            "pilothouse_pod_network_transmit_bytes",
            "Bytes a pod sent on its network interface.",
            labels=["namespace", "pod"],
        )
        for pod in self.pods:
            for c in pod.containers:
                key = [pod.namespace, pod.name, c.name]
                cpu.add_metric(key, c.cpu_nanocores / 1e9)
                memory.add_metric(key, c.memory_working_set_bytes)
                restarts.add_metric(key, c.restarts)
            rx.add_metric([pod.namespace, pod.name], pod.network_rx_bytes)
            tx.add_metric([pod.namespace, pod.name], pod.network_tx_bytes)
        yield from (cpu, memory, restarts, rx, tx)
        node_cpu = GaugeMetricFamily(
            "pilothouse_node_cpu_usage_cores", "CPU the node used over the last interval."
        )
        node_memory = GaugeMetricFamily(
            "pilothouse_node_memory_working_set_bytes", "The node's memory in use."
        )
        if self.node is not None:
            node_cpu.add_metric([], self.node.cpu_nanocores / 1e9)
            node_memory.add_metric([], self.node.memory_working_set_bytes)
        yield from (node_cpu, node_memory)


_USAGE = _Usage()
REGISTRY.register(_USAGE)


def observe(node: Any, pods: Sequence[Any]) -> None:
    """The usage sampler's pass (`nodeagent.pods.usage`), for the next scrape."""
    _USAGE.node, _USAGE.pods = node, tuple(pods)


def probe_result(probe: str, *, ok: bool) -> None:
    PROBE_RESULTS.labels(probe=probe, result="success" if ok else "failure").inc()


def image_pull(*, ok: bool, seconds: float | None = None) -> None:
    IMAGE_PULLS.labels(result="success" if ok else "failure").inc()
    if seconds is not None:
        IMAGE_PULL_SECONDS.observe(seconds)


def server(listen: str) -> MetricsServer:
    return MetricsServer(listen=listen, registry=REGISTRY)

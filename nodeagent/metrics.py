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

Invariants: recording is plain counting in this module (no metrics library is loaded: most
agents never serve metrics, and prometheus_client costs each agent ~4.5 MiB); the library is
imported, and the counts exposed through one collector, only when main wires a
`MetricsServer` for --metrics-listen (`server`); recording never fails the caller; per-pod
series come from the latest sample only, so a pod that left the node leaves the metrics with it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.registry import Metric

    from pilothouse.process.metricserver import MetricsServer

PULL_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _Counts:
    """What was recorded since the agent started, and the usage sampler's latest pass."""

    def __init__(self) -> None:
        self.probe_results: Counter[tuple[str, str]] = Counter()  # (probe, result)
        self.image_pulls: Counter[str] = Counter()  # result
        self.pull_buckets = [0] * (len(PULL_BUCKETS) + 1)  # the last one: +Inf
        self.pull_sum = 0.0
        self.node: Any = None
        self.pods: Sequence[Any] = ()


_COUNTS = _Counts()


def observe(node: Any, pods: Sequence[Any]) -> None:
    """The usage sampler's pass (`nodeagent.pods.usage`), for the next scrape."""
    _COUNTS.node, _COUNTS.pods = node, tuple(pods)


def probe_result(probe: str, *, ok: bool) -> None:
    _COUNTS.probe_results[(probe, "success" if ok else "failure")] += 1


def image_pull(*, ok: bool, seconds: float | None = None) -> None:
    _COUNTS.image_pulls["success" if ok else "failure"] += 1
    if seconds is not None:
        _COUNTS.pull_buckets[bisect.bisect_left(PULL_BUCKETS, seconds)] += 1
        _COUNTS.pull_sum += seconds


def server(listen: str) -> MetricsServer:
    """The runnable serving these metrics on `listen` (imports prometheus_client)."""
    from prometheus_client import CollectorRegistry

    from pilothouse.process.metricserver import MetricsServer

    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector())
    return MetricsServer(listen=listen, registry=registry)


class _Collector:
    """The counts as Prometheus metric families, made at each scrape."""

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families are made at collect time

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        counts = _COUNTS
        probes = CounterMetricFamily(
            "pilothouse_probe_results",
            "Probe checks of containers, by probe (liveness, readiness, startup) and result.",
            labels=["probe", "result"],
        )
        for (probe, result), value in sorted(counts.probe_results.items()):
            probes.add_metric([probe, result], value)
        pulls = CounterMetricFamily(
            "pilothouse_image_pulls",
            "Image pulls (or checks of an image already present), by result (success, failure).",
            labels=["result"],
        )
        for result, value in sorted(counts.image_pulls.items()):
            pulls.add_metric([result], value)
        cumulative, buckets = 0, []
        for bound, count in zip((*PULL_BUCKETS, float("inf")), counts.pull_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), cumulative))
        pull_seconds = HistogramMetricFamily(
            "pilothouse_image_pull_duration_seconds",
            "How long getting a container's image took, when it was pulled.",
            buckets=buckets,
            sum_value=counts.pull_sum,
        )
        yield from (probes, pulls, pull_seconds)
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
        for pod in counts.pods:
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
        if counts.node is not None:
            node_cpu.add_metric([], counts.node.cpu_nanocores / 1e9)
            node_memory.add_metric([], counts.node.memory_working_set_bytes)
        yield from (node_cpu, node_memory)

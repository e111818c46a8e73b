"""The control plane's Prometheus metrics, in a registry of its own (`REGISTRY`).

Names follow Prometheus' conventions (`pilothouse_` prefix, base units, `_total` counters,
`_seconds` durations). What is measured, and where it is recorded:
- API: `pilothouse_api_requests_total{method, code}` and
  `pilothouse_api_request_duration_seconds{method, code}` (every call, `api.metering`);
- reconciling: `pilothouse_reconcile_total{controller, result}`,
  `pilothouse_reconcile_duration_seconds{controller}` and the work queue's depth
  `pilothouse_workqueue_depth{controller}` (the engine, `reconcile.controller`);
- scheduling: `pilothouse_scheduler_attempts_total{result}` and
  `pilothouse_scheduler_attempt_duration_seconds` (`scheduler.runner`);
- etcd: `pilothouse_etcd_request_duration_seconds{operation}` (`store.etcd`);
- node sync: `pilothouse_node_sync_pushes_total{result}` (`nodes.syncer`);
- leadership: `pilothouse_leader` (1 while this member leads) and
  `pilothouse_leader_changes_total` (`leader.leadership`);
- autoscaling: `pilothouse_hpa_scale_total{direction}`.

Invariants: this module is the bottom of the control plane's layers and imports nothing of it,
so any layer may record; recording never raises; the metric objects are made once, at import
(the library's way), and served only when main wires a `MetricsServer` for --metrics-listen.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilothouse.process.metricserver import MetricsServer

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

API_REQUESTS = Counter(
    "pilothouse_api_requests",
    "API calls served, by method and gRPC status code.",
    ["method", "code"],
    registry=REGISTRY,
)
API_SECONDS = Histogram(
    "pilothouse_api_request_duration_seconds",
    "How long API calls took (streams: until they ended), by method and status code.",
    ["method", "code"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
RECONCILES = Counter(
    "pilothouse_reconcile",
    "Reconciles, by controller and result (success, requeue, conflict, error, terminal).",
    ["controller", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "pilothouse_reconcile_duration_seconds",
    "How long one reconcile took, by controller.",
    ["controller"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
SCHEDULE_ATTEMPTS = Counter(
    "pilothouse_scheduler_attempts",
    "Attempts to place a pod, by result (scheduled, unschedulable, error).",
    ["result"],
    registry=REGISTRY,
)
SCHEDULE_SECONDS = Histogram(
    "pilothouse_scheduler_attempt_duration_seconds",
    "How long one scheduling attempt took (choosing and binding).",
    buckets=_LATENCY,
    registry=REGISTRY,
)
ETCD_SECONDS = Histogram(
    "pilothouse_etcd_request_duration_seconds",
    "How long etcd requests took, by operation.",
    ["operation"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
NODE_PUSHES = Counter(
    "pilothouse_node_sync_pushes",
    "Pushes of a node's desired pod set to its agent, by result (success, failure).",
    ["result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "pilothouse_leader", "1 while this control-plane member leads, else 0.", registry=REGISTRY
)
LEADER_CHANGES = Counter(
    "pilothouse_leader_changes",
    "Terms of leadership this member began or ended.",
    ["event"],
    registry=REGISTRY,
)
HPA_SCALES = Counter(
    "pilothouse_hpa_scale",
    "Scale changes made by HorizontalPodAutoscalers, by direction (up, down).",
    ["direction"],
    registry=REGISTRY,
)


class _Queues(Collector):
    """The depth of every running controller's work queue."""

    def __init__(self) -> None:
        self.controllers: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "pilothouse_workqueue_depth",
            "Keys waiting in a controller's work queue.",
            labels=["controller"],
        )
        for controller in list(self.controllers):
            depth.add_metric([controller.name], controller.queue.depth())
        yield depth


_QUEUES = _Queues()
REGISTRY.register(_QUEUES)


def controller_started(controller: Any) -> None:
    """A controller (name, queue.depth()) whose queue depth is reported while it lives."""
    _QUEUES.controllers.add(controller)


_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, made once per label set: the library's `labels()` takes a
    lock and builds its key on every call (3% of the control plane under a 1,000-node load).
    The label sets are few (controllers, API methods and codes, results)."""
    key = (id(metric), values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def reconciled(controller: str, result: str, seconds: float) -> None:
    child(RECONCILES, controller, result).inc()
    child(RECONCILE_SECONDS, controller).observe(seconds)


def scheduled(result: str, seconds: float) -> None:
    child(SCHEDULE_ATTEMPTS, result).inc()
    SCHEDULE_SECONDS.observe(seconds)


def pushed(*, ok: bool) -> None:
    child(NODE_PUSHES, "success" if ok else "failure").inc()


def leading(now: bool) -> None:
    LEADER.set(1 if now else 0)
    LEADER_CHANGES.labels(event="began" if now else "ended").inc()


class etcd_timer:  # lower case: used as `with metrics.etcd_timer("get"):`
    """Times one etcd request."""

    def __init__(self, operation: str) -> None:
        self._operation = operation
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        child(ETCD_SECONDS, self._operation).observe(time.perf_counter() - self._began)


def server(listen: str) -> MetricsServer:
    return MetricsServer(listen=listen, registry=REGISTRY)

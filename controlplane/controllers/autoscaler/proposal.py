"""What an HPA's metrics propose: per metric, its pods' samples against their requests and
the target (`algorithm`), the largest proposal winning, as kube-controller-manager's
replica calculator does.

Role: step 3's first half of the controller's reconcile (`controller`): from the target's
pods and their latest usage to one proposed replica count, the metrics' current values for
the HPA's status, and the reason the event names. Pure: no I/O.

Invariants: a metric that cannot be computed (no samples, a pod with no request for a
utilization target, an unparsable quantity) raises `Unmeasurable` (ScalingActive=False);
with no metrics in the spec, autoscaling/v2's default (80 % CPU utilization) applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from controlplane.controllers.autoscaler import algorithm
from pilothouse import quantity, selectors
from pilothouse.v1 import objects_pb2


class PodUsage(Protocol):
    """What the controller reads of one pod's sample (`nodes.usage.PodCpuMemory`)."""

    cpu_millis: float
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class Evaluation:
    proposal: int
    metric_statuses: tuple[objects_pb2.MetricStatus, ...]
    reason: str  # for the event: "cpu resource utilization (percentage of request) above target"


class Unmeasurable(Exception):
    """A metric cannot be computed (no samples, no requests): ScalingActive=False."""


def propose(
    hpa: objects_pb2.HorizontalPodAutoscaler,
    *,
    pods: Sequence[objects_pb2.Pod],
    usage: Mapping[str, PodUsage],
    current: int,
    tolerance: float,
) -> Evaluation:
    """The replica count the HPA's metrics ask for (the largest of them)."""
    best: tuple[int, str] | None = None
    statuses = []
    for metric in hpa.spec.metrics or [default_metric()]:
        resource = metric.resource.name
        samples, missing = [], 0
        for pod in pods:
            request = requests(pod, resource)
            sample = usage.get(pod.metadata.name)
            if sample is None:
                missing += 1
                continue
            used = sample.cpu_millis if resource == "cpu" else float(sample.memory_bytes)
            samples.append(algorithm.PodSample(used, request, ready=ready(pod)))
        target = metric.resource.target
        value = objects_pb2.MetricValueStatus()
        try:
            if target.type == "AverageValue":
                amount = (
                    quantity.parse_cpu(target.average_value)
                    if resource == "cpu"
                    else quantity.parse_memory(target.average_value)
                )
                proposal = algorithm.average_value_proposal(
                    current_replicas=current,
                    samples=samples,
                    target=float(amount),
                    tolerance=tolerance,
                )
                value.average_value = (
                    quantity.format_cpu(round(proposal.current))
                    if resource == "cpu"
                    else str(round(proposal.current))
                )
                reason = f"{resource} resource"
            else:
                missing_request = [p.metadata.name for p in pods if requests(p, resource) <= 0]
                if missing_request:
                    raise Unmeasurable(
                        f"failed to get {resource} utilization: missing request for "
                        f"{resource} in pod {missing_request[0]}"
                    )
                proposal = algorithm.utilization_proposal(
                    current_replicas=current,
                    samples=samples,
                    missing=missing,
                    target_percent=float(target.average_utilization),
                    tolerance=tolerance,
                    unready_count_zero=resource == "cpu",
                )
                value.average_utilization = round(proposal.current)
                reason = f"{resource} resource utilization (percentage of request)"
        except ValueError as why:
            raise Unmeasurable(f"failed to get {resource} utilization: {why}") from None
        statuses.append(
            objects_pb2.MetricStatus(
                type="Resource",
                resource=objects_pb2.ResourceMetricStatus(name=resource, current=value),
            )
        )
        if best is None or proposal.replicas > best[0]:
            best = (proposal.replicas, reason)
    assert best is not None
    return Evaluation(proposal=best[0], metric_statuses=tuple(statuses), reason=best[1])


def default_metric() -> objects_pb2.MetricSpec:
    """autoscaling/v2's default: 80 % CPU utilization."""
    return objects_pb2.MetricSpec(
        type="Resource",
        resource=objects_pb2.ResourceMetricSource(
            name="cpu", target=objects_pb2.MetricTarget(type="Utilization", average_utilization=80)
        ),
    )


def selector_of(target: Message) -> selectors.Selector:
    selector = target.spec.selector
    if isinstance(selector, objects_pb2.LabelSelector):
        return selectors.from_match_labels(selector.match_labels)
    return selectors.from_match_labels(selector)  # a ReplicationController's plain map


def requests(pod: objects_pb2.Pod, resource: str) -> float:
    total = 0.0
    for container in pod.spec.containers:
        resources = container.resources
        amount = resources.requests.get(resource) or resources.limits.get(resource)
        if not amount:
            return 0.0
        total += quantity.parse_cpu(amount) if resource == "cpu" else quantity.parse_memory(amount)
    return total


def ready(pod: objects_pb2.Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)

"""HorizontalPodAutoscalers (autoscaling/v2), as its validation has them: a scale target of a
kind that has a scale (Deployment, ReplicaSet, ReplicationController, StatefulSet) and a name;
1 <= minReplicas <= maxReplicas; Resource metrics of cpu or memory with a Utilization target
(a positive percent) or an AverageValue (a positive quantity); behavior windows within an hour,
policies of type Pods or Percent with positive values and periods of at most 30 minutes.
Metric types other than Resource are refused: nothing here measures them.
"""

from __future__ import annotations

from pilothouse import quantity
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

SCALABLE_KINDS = ("Deployment", "ReplicaSet", "ReplicationController", "StatefulSet")
METRIC_TYPES = ("Resource",)
RESOURCES = ("cpu", "memory")
TARGET_TYPES = ("Utilization", "AverageValue")
POLICY_TYPES = ("Pods", "Percent")
SELECT_POLICIES = ("Max", "Min", "Disabled")
MAX_WINDOW_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800


def autoscaler(found: Findings, hpa: objects_pb2.HorizontalPodAutoscaler) -> None:
    spec = hpa.spec
    ref = spec.scale_target_ref
    if not ref.kind:
        found.required("spec.scaleTargetRef.kind")
    elif ref.kind not in SCALABLE_KINDS:
        found.unsupported("spec.scaleTargetRef.kind", ref.kind, SCALABLE_KINDS)
    if not ref.name:
        found.required("spec.scaleTargetRef.name")
    minimum = spec.min_replicas if spec.HasField("min_replicas") else 1
    if minimum < 1:
        found.invalid("spec.minReplicas", minimum, "must be greater than or equal to 1")
    if spec.max_replicas < minimum:
        found.invalid(
            "spec.maxReplicas", spec.max_replicas, "must be greater than or equal to `minReplicas`"
        )
    for i, metric in enumerate(spec.metrics):
        _metric(found, metric, f"spec.metrics[{i}]")
    behavior = spec.behavior
    for name, rules in (("scaleUp", behavior.scale_up), ("scaleDown", behavior.scale_down)):
        _rules(found, rules, f"spec.behavior.{name}")


def _metric(found: Findings, metric: objects_pb2.MetricSpec, path: str) -> None:
    if metric.type not in METRIC_TYPES:
        found.unsupported(f"{path}.type", metric.type, METRIC_TYPES)
        return
    resource = metric.resource
    if resource.name not in RESOURCES:
        found.unsupported(f"{path}.resource.name", resource.name, RESOURCES)
    target = resource.target
    if target.type not in TARGET_TYPES:
        found.unsupported(f"{path}.resource.target.type", target.type, TARGET_TYPES)
    elif target.type == "Utilization":
        if not target.HasField("average_utilization"):
            found.required(f"{path}.resource.target.averageUtilization")
        elif target.average_utilization <= 0:
            found.invalid(
                f"{path}.resource.target.averageUtilization",
                target.average_utilization,
                "must be greater than 0",
            )
        if target.average_value:
            found.forbidden(
                f"{path}.resource.target.averageValue", "may not be set with Utilization"
            )
    else:
        field = f"{path}.resource.target.averageValue"
        if not target.average_value:
            found.required(field)
        else:
            try:
                if quantity.parse(target.average_value) <= 0:
                    found.invalid(field, target.average_value, "must be positive")
            except (ValueError, quantity.QuantityError):
                found.invalid(field, target.average_value, "must be a quantity")
        if target.HasField("average_utilization"):
            found.forbidden(
                f"{path}.resource.target.averageUtilization", "may not be set with AverageValue"
            )


def _rules(found: Findings, rules: objects_pb2.HPAScalingRules, path: str) -> None:
    if rules.HasField("stabilization_window_seconds") and not (
        0 <= rules.stabilization_window_seconds <= MAX_WINDOW_SECONDS
    ):
        found.invalid(
            f"{path}.stabilizationWindowSeconds",
            rules.stabilization_window_seconds,
            f"must be between 0 and {MAX_WINDOW_SECONDS}",
        )
    if rules.select_policy and rules.select_policy not in SELECT_POLICIES:
        found.unsupported(f"{path}.selectPolicy", rules.select_policy, SELECT_POLICIES)
    for i, policy in enumerate(rules.policies):
        where = f"{path}.policies[{i}]"
        if policy.type not in POLICY_TYPES:
            found.unsupported(f"{where}.type", policy.type, POLICY_TYPES)
        if policy.value <= 0:
            found.invalid(f"{where}.value", policy.value, "must be greater than zero")
        if not 0 < policy.period_seconds <= MAX_PERIOD_SECONDS:
            found.invalid(
                f"{where}.periodSeconds",
                policy.period_seconds,
                f"must be greater than zero and less than or equal to {MAX_PERIOD_SECONDS}",
            )

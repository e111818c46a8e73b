"""Deployments and ReplicaSets: the selector and the pod template it must select, the rollout
strategy, replica counts and deadlines.
"""

from __future__ import annotations

import re

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Value

from pilothouse.manifests.validation.findings import Findings, show
from pilothouse.manifests.validation.meta import labels
from pilothouse.manifests.validation.pods import pod_spec
from pilothouse.v1 import objects_pb2

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MESSAGE = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)


def deployment_spec(found: Findings, spec: objects_pb2.DeploymentSpec) -> None:
    if spec.HasField("replicas"):
        found.nonnegative("spec.replicas", spec.replicas)
    template(found, spec.selector, spec.template, restart_policies=("Always",), holder=spec)
    _strategy(found, spec.strategy)
    found.nonnegative("spec.minReadySeconds", spec.min_ready_seconds)
    if spec.HasField("revision_history_limit"):
        found.nonnegative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.HasField("progress_deadline_seconds"):
        found.nonnegative("spec.progressDeadlineSeconds", spec.progress_deadline_seconds)
        if spec.progress_deadline_seconds <= spec.min_ready_seconds:
            found.invalid(
                "spec.progressDeadlineSeconds",
                spec.progress_deadline_seconds,
                "must be greater than minReadySeconds",
            )
    if (
        spec.rollback_on_failure
        and spec.HasField("revision_history_limit")
        and spec.revision_history_limit == 0
    ):
        found.invalid(
            "spec.rollbackOnFailure",
            True,
            "needs a revisionHistoryLimit of at least 1, or there is no revision to go back to",
        )


def template(
    found: Findings,
    selector: objects_pb2.LabelSelector,
    template: objects_pb2.PodTemplateSpec,
    *,
    restart_policies: tuple[str, ...],
    holder: Message,
) -> None:
    """A selector and the pod template it must select (Deployments, ReplicaSets)."""
    match_labels = selector.match_labels
    if not holder.HasField("selector"):
        found.required("spec.selector")
    elif not match_labels:
        found.invalid("spec.selector", {}, "empty selector is invalid for deployment")
    else:
        labels(found, "spec.selector.matchLabels", match_labels)
    template_labels = template.metadata.labels
    labels(found, "spec.template.metadata.labels", template_labels)
    if match_labels and any(template_labels.get(k) != v for k, v in match_labels.items()):
        found.invalid(
            "spec.template.metadata.labels",
            dict(template_labels),
            "`selector` does not match template `labels`",
        )
    if not holder.HasField("template"):
        found.required("spec.template")
    else:
        pod_spec(found, template.spec, "spec.template.spec", restart_policies=restart_policies)


def _strategy(found: Findings, strategy: objects_pb2.DeploymentStrategy) -> None:
    path = "spec.strategy"
    if strategy.type and strategy.type not in ("Recreate", "RollingUpdate"):
        found.unsupported(f"{path}.type", strategy.type, ("Recreate", "RollingUpdate"))
        return
    if strategy.type == "Recreate":
        if strategy.HasField("rolling_update"):
            found.forbidden(
                f"{path}.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        return
    rolling = strategy.rolling_update
    surge = _int_or_percent(found, f"{path}.rollingUpdate.maxSurge", rolling, "max_surge")
    unavailable = _int_or_percent(
        found, f"{path}.rollingUpdate.maxUnavailable", rolling, "max_unavailable"
    )
    if unavailable is not None and unavailable[1] and unavailable[0] > 100:
        found.invalid(
            f"{path}.rollingUpdate.maxUnavailable",
            f"{unavailable[0]}%",
            "must not be greater than 100%",
        )
    if surge is not None and unavailable is not None and surge[0] == 0 and unavailable[0] == 0:
        found.invalid(
            f"{path}.rollingUpdate.maxUnavailable",
            _show_int_or_string(rolling.max_unavailable),
            "may not be 0 when `maxSurge` is 0",
        )


def _show_int_or_string(value: Value) -> int | str:
    if value.HasField("string_value"):
        return value.string_value
    return int(value.number_value)


def _int_or_percent(
    found: Findings, field: str, holder: Message, name: str
) -> tuple[int, bool] | None:
    """(amount, is_percent) of an IntOrString field, or None when unset or invalid."""
    if not holder.HasField(name):
        return None
    value: Value = getattr(holder, name)
    if value.HasField("string_value"):
        text = value.string_value
        if not _PERCENT.match(text):
            found.invalid(field, text, _PERCENT_MESSAGE)
            return None
        return int(text[:-1]), True
    if value.HasField("number_value") and value.number_value.is_integer():
        number = int(value.number_value)
        if number < 0:
            found.invalid(field, number, "must be greater than or equal to 0")
            return None
        return number, False
    found.invalid(field, show(value.number_value), "must be an integer or a percent string")
    return None

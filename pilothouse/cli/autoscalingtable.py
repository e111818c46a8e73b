"""kubectl's `get hpa` columns: NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE.

TARGETS is one `<resource>: <current>/<target>` per metric, comma-separated, as kubectl 1.30
prints it ("cpu: 45%/50%", "memory: 120Mi/200Mi"); `<unknown>` where no value was measured yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pilothouse import quantity
from pilothouse.cli.cells import age
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

_RowFn = Callable[[Any, datetime], tuple[str, ...]]


def targets(hpa: o.HorizontalPodAutoscaler) -> str:
    current = {m.resource.name: m.resource.current for m in hpa.status.current_metrics}
    parts = []
    for metric in hpa.spec.metrics:
        resource = metric.resource
        target = resource.target
        now = current.get(resource.name)
        if target.type == "Utilization":
            have = (
                f"{now.average_utilization}%"
                if now is not None and now.HasField("average_utilization")
                else "<unknown>"
            )
            parts.append(f"{resource.name}: {have}/{target.average_utilization}%")
        else:
            have = now.average_value if now is not None and now.average_value else "<unknown>"
            if have != "<unknown>" and resource.name == "memory":
                have = quantity.human_memory(int(float(have)))
            parts.append(f"{resource.name}: {have}/{target.average_value}")
    return ", ".join(parts) or "<none>"


def _columns(*, wide: bool, pods: object) -> tuple[tuple[str, ...], _RowFn]:
    headers = ("NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE")

    def row(hpa: o.HorizontalPodAutoscaler, now: datetime) -> tuple[str, ...]:
        ref = hpa.spec.scale_target_ref
        return (
            hpa.metadata.name,
            f"{ref.kind}/{ref.name}",
            targets(hpa),
            str(hpa.spec.min_replicas if hpa.spec.HasField("min_replicas") else 1),
            str(hpa.spec.max_replicas),
            str(hpa.status.current_replicas),
            age(hpa.metadata.creation_timestamp, now),
        )

    return headers, row


COLUMNS = {Kind.HORIZONTALPODAUTOSCALER: _columns}

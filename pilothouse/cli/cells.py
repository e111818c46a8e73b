"""Cells of kubectl's tables: ages, durations, selectors and a workload's template, as kubectl
prints them (pure: the current time is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from pilothouse.v1 import objects_pb2 as o

NONE = "<none>"


def age(timestamp: Timestamp | None, now: datetime) -> str:
    """Time since `timestamp`, as kubectl prints it ("5s", "3m", "2h", "4d")."""
    if timestamp is None or (timestamp.seconds == 0 and timestamp.nanos == 0):
        return "<unknown>"
    seconds = (now - timestamp.ToDatetime(tzinfo=UTC)).total_seconds()
    return human_duration(seconds)


def human_duration(seconds: float) -> str:
    """kubectl's `duration.HumanDuration`: coarser as durations grow."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{hours // 24 // 365}y"


def selector_text(labels: dict[str, str] | Iterable[tuple[str, str]]) -> str:
    pairs = sorted(dict(labels).items())
    return ",".join(f"{k}={v}" for k, v in pairs) if pairs else NONE


def template_cells(template: o.PodTemplateSpec, selector: o.LabelSelector) -> tuple[str, ...]:
    """CONTAINERS, IMAGES and SELECTOR of a workload's `-o wide` row."""
    containers = template.spec.containers
    return (
        ",".join(c.name for c in containers) or NONE,
        ",".join(c.image for c in containers) or NONE,
        selector_text(selector.match_labels),
    )

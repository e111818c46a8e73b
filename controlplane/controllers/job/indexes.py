"""Completion indexes of an Indexed Job, and Kubernetes' compact form of a set of them.

`format_ranges({0, 1, 2, 5})` is "0-2,5" (status.completedIndexes); `parse_ranges` reads it
back, ignoring what it cannot read. Pods carry their index in the annotation and label
`batch.kubernetes.io/job-completion-index`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilothouse.v1 import objects_pb2

INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def format_ranges(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    parts: list[str] = []
    start = prev = None
    for index in ordered:
        if start is None:
            start = prev = index
        elif index == prev + 1:
            prev = index
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = index
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def parse_ranges(text: str) -> set[int]:
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if high else first
        except ValueError:
            continue
        found.update(range(first, last + 1))
    return found


def index_of(pod: objects_pb2.Pod) -> int | None:
    text = pod.metadata.annotations.get(INDEX_KEY) or pod.metadata.labels.get(INDEX_KEY)
    if text is None or not text.isdigit():
        return None
    return int(text)

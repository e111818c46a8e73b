"""Findings: the problems found in one object, as (field path, message) pairs, in
apimachinery's message forms (`Required value`, `Invalid value: <v>: <why>` …).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return str(value)


class Findings:
    """The problems found in one object, in the order they were found."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def required(self, field: str, detail: str = "") -> None:
        self.items.append((field, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.items.append((field, f"Invalid value: {show(value)}: {detail}"))

    def unsupported(self, field: str, value: str, supported: Iterable[str]) -> None:
        listed = ", ".join(f'"{s}"' for s in sorted(supported))
        self.items.append((field, f'Unsupported value: "{value}": supported values: {listed}'))

    def duplicate(self, field: str, value: Any) -> None:
        self.items.append((field, f"Duplicate value: {show(value)}"))

    def forbidden(self, field: str, detail: str) -> None:
        self.items.append((field, f"Forbidden: {detail}"))

    def nonnegative(self, field: str, value: int) -> None:
        if value < 0:
            self.invalid(field, value, "must be greater than or equal to 0")

"""The layout of `describe` output: aligned `Key:  value` fields, nested sections, small tables.

Invariants: consecutive fields share one value column whatever their depth (a section header
or a table ends the run), as kubectl's tabwriter aligns them; multi-line values continue under
the value column; timestamps print in kubectl's RFC 1123 form, in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

NONE = "<none>"
_INDENT = "  "


def timestamp(stamp: Timestamp | None) -> str:
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return NONE
    return stamp.ToDatetime(tzinfo=UTC).strftime("%a, %d %b %Y %H:%M:%S %z")


def mapping(values: Mapping[str, str], *, separator: str = "=") -> str:
    """Labels as `k=v` lines; annotations with `separator=": "`."""
    if not values:
        return NONE
    return "\n".join(f"{k}{separator}{v}" for k, v in sorted(values.items()))


@dataclass(frozen=True, slots=True)
class _Field:
    level: int
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class _Table:
    level: int
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class Sheet:
    parts: list[_Field | _Heading | _Table] = field(default_factory=list)

    def field(self, key: str, value: object, *, level: int = 0) -> None:
        text = str(value) if value is not None and value != "" else NONE
        self.parts.append(_Field(level, key, text))

    def heading(self, text: str, *, level: int = 0) -> None:
        self.parts.append(_Heading(level, text))

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        level: int = 1,
    ) -> None:
        self.parts.append(_Table(level, tuple(headers), tuple(tuple(r) for r in rows)))

    def render(self) -> str:
        lines: list[str] = []
        run: list[_Field] = []
        for part in [*self.parts, None]:
            if isinstance(part, _Field):
                run.append(part)
                continue
            lines.extend(_fields(run))
            run = []
            if isinstance(part, _Heading):
                lines.append(_INDENT * part.level + part.text)
            elif isinstance(part, _Table):
                lines.extend(_table(part))
        return "\n".join(lines)


def _fields(run: list[_Field]) -> list[str]:
    """Consecutive fields share one value column, whatever their depth (kubectl's tabwriter)."""
    if not run:
        return []
    width = max(len(_INDENT * f.level + f.key) for f in run) + 1 + 2
    lines: list[str] = []
    for f in run:
        label = f"{_INDENT * f.level}{f.key}:"
        first, *rest = f.value.split("\n")
        lines.append(f"{label.ljust(width)}{first}".rstrip())
        lines.extend(f"{' ' * width}{line}".rstrip() for line in rest)
    return lines


def _table(part: _Table) -> list[str]:
    indent = _INDENT * part.level
    underline = tuple("-" * len(h) for h in part.headers)
    every = [part.headers, underline, *part.rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(part.headers))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in every
    ]

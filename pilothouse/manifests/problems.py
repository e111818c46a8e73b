"""What is wrong with a manifest, said precisely enough to fix it.

Invariants: a `Problem` names its file ("" for an object that came over the API), the 1-based
index of the document in that file (0 when not from a file), the field path in the JSON names
a person wrote (`spec.template.spec.containers[0].ports[1].containerPort`, "" for the whole
document) and a message worded as Kubernetes words it where Kubernetes has one. A
`ManifestError` carries every problem found, never only the first. A message quotes what a
person wrote only as far as it helps to find it: a quoted value longer than `QUOTE_LIMIT`
characters is cut (`"xxxx…" (10000 characters)`), so one bad 10 KB line cannot flood a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

QUOTE_LIMIT = 200
MESSAGE_LIMIT = 600
_LONG_QUOTE = re.compile(r'"([^"]{' + str(QUOTE_LIMIT + 1) + r',})"')


def shorten(message: str) -> str:
    """`message` with every long quoted value cut, and at most `MESSAGE_LIMIT` characters."""

    def cut(match: re.Match[str]) -> str:
        value = match.group(1)
        return f'"{value[:QUOTE_LIMIT]}…" ({len(value)} characters)'

    message = _LONG_QUOTE.sub(cut, message)
    if len(message) > MESSAGE_LIMIT:
        message = f"{message[:MESSAGE_LIMIT]}… ({len(message)} characters)"
    return message


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    document: int
    field: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", shorten(self.message))
        if len(self.field) > MESSAGE_LIMIT:
            object.__setattr__(self, "field", f"{self.field[:MESSAGE_LIMIT]}…")

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.document:
            parts.append(f"document {self.document}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ManifestError(ValueError):
    """One or more manifests are invalid; `problems` lists every one of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

"""What is wrong with a manifest, said precisely enough to fix it.

Invariants: a `Problem` names its file ("" for an object that came over the API), the 1-based
index of the document in that file (0 when not from a file), the field path in the JSON names
a person wrote (`spec.template.spec.containers[0].ports[1].containerPort`, "" for the whole
document) and a message worded as Kubernetes words it where Kubernetes has one. A
`ManifestError` carries every problem found, never only the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    document: int
    field: str
    message: str

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

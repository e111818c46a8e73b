"""Manifests: Kubernetes-style YAML/JSON mapped onto the object messages, defaulted, validated.

Public API (the rest of the package is private):
- `load(sources)`: read files, directories and stdin ("-") into `Document`s, or raise a
  `ManifestError` carrying every `Problem` of every source.
- `parse(text, source=...)`: the same for text already in hand, returning (documents, problems).
- `validate(message)`: the problems of an object that arrived without a file (over the API).
- `set_defaults(message)`: Kubernetes' defaults, in place, idempotent.

Invariants: an object is valid only after `set_defaults` then `validate` report nothing, which
is what `load` does to every document; nothing of a source is returned when any document in any
source is invalid.
"""

from __future__ import annotations

from google.protobuf.message import Message

from pilothouse.manifests.defaults import set_defaults
from pilothouse.manifests.loader import SUPPORTED, Document, load, parse, resolve_kind
from pilothouse.manifests.problems import ManifestError, Problem
from pilothouse.manifests.validation import check


def validate(message: Message) -> list[Problem]:
    """Every problem of one object (file "" and document 0: it came from no file)."""
    return [Problem("", 0, field, text) for field, text in check(message)]


__all__ = [
    "SUPPORTED",
    "Document",
    "ManifestError",
    "Problem",
    "load",
    "parse",
    "resolve_kind",
    "set_defaults",
    "validate",
]

"""Manifests: Kubernetes-style YAML/JSON mapped onto the object messages, defaulted, validated.

Public API (the rest of the package is private):
- `load(sources)`: read files, directories and stdin ("-") into `Document`s, or raise a
  `ManifestError` carrying every `Problem` of every source.
- `parse(text, source=...)`: the same for text already in hand, returning (documents, problems).
- `validate(message, policy=…)`: the problems of an object that arrived without a file (over
  the API); with a `ClusterPolicy`, also what the cluster's administrator does not allow.
- `set_defaults(message)`: Kubernetes' defaults, in place, idempotent.

Invariants: an object is valid only after `set_defaults` then `validate` report nothing, which
is what `load` does to every document; nothing of a source is returned when any document in any
source is invalid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from pilothouse import lazy
from pilothouse.manifests.problems import ManifestError, Problem

if TYPE_CHECKING:
    from pilothouse.manifests.defaults import set_defaults
    from pilothouse.manifests.loader import SUPPORTED, Document, load, parse, resolve_kind
    from pilothouse.manifests.validation.policy import ClusterPolicy

# The heavier parts (the loader, defaults, validation) are imported when first asked for, so
# that importing one small module of the package (`names`, `problems`) costs only that module:
# the CLI's start-up (pilothouse.selectors uses `names`) does not pay for validation.
_LAZY = {
    "SUPPORTED": "pilothouse.manifests.loader",
    "Document": "pilothouse.manifests.loader",
    "load": "pilothouse.manifests.loader",
    "parse": "pilothouse.manifests.loader",
    "resolve_kind": "pilothouse.manifests.loader",
    "set_defaults": "pilothouse.manifests.defaults",
    "ClusterPolicy": "pilothouse.manifests.validation.policy",
}

__getattr__ = lazy.attributes(__name__, _LAZY)


def validate(message: Message, *, policy: ClusterPolicy | None = None) -> list[Problem]:
    """Every problem of one object (file "" and document 0: it came from no file), and with a
    `policy` (the API server's), every setting that policy does not allow."""
    from pilothouse.manifests.validation import check
    from pilothouse.manifests.validation import policy as _policy

    found = check(message)
    if policy is not None:
        found += _policy.check(message, policy)
    return [Problem("", 0, field, text) for field, text in found]


__all__ = [
    "SUPPORTED",
    "ClusterPolicy",
    "Document",
    "ManifestError",
    "Problem",
    "load",
    "parse",
    "resolve_kind",
    "set_defaults",
    "validate",
]

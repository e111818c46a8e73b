"""Objects: typed objects (Deployment, Pod, Node …) over the byte-level Store.

Every controller and the API read and write objects through this layer and nothing else.

Vocabulary:
- key: /pilothouse/<plural>/<namespace>/<name>; cluster-scoped kinds: /pilothouse/<plural>/<name>
  (`keys`).
- value: the object's binary protobuf, stored with `metadata.resourceVersion` cleared (it is
  derived from the entry on every read).
- spec: every top-level field of an object except apiVersion, kind, metadata and status
  (for an Event: involvedObject, reason, message …) (`apply.spec_of`).

Modules: `store` (ObjectStore: get, list, watch, create, update, update_status, delete, apply),
`keys` (where an object is stored and how messages name it), `apply` (what an apply keeps and
changes), `owners` (owner references), `pods` (what a stored Pod's status says), `endpoints`
(what a stored EndpointSlice says).

Invariants:
- `metadata.resourceVersion` of an object read here is `str(entry.revision)` of its entry.
- Every write is a compare-and-swap on that resourceVersion; a lost race raises `Conflict`.
- The store sets uid, creationTimestamp, generation, apiVersion and kind; callers cannot change
  uid or creationTimestamp afterwards.
- `generation` starts at 1 and increases exactly when the spec changes.
- `update` never writes status; `update_status` writes only status. A write that would change
  nothing is skipped: the object and its resourceVersion stay as they were.
- Errors are the store's own types (`NotFound`, `AlreadyExists`, `Conflict`, `Compacted`,
  `Unavailable`) with messages in the object's terms (`deployments "web" not found`), plus
  `Invalid` for an object that cannot be stored at all (no name …).
"""

from controlplane.objects.apply import CONTROLLER_ANNOTATION_PREFIXES, Applied, ApplyOutcome
from controlplane.objects.keys import describe, key_prefix, object_key
from controlplane.objects.store import (
    ChangeType,
    Invalid,
    LabelMatcher,
    ObjectChange,
    ObjectList,
    ObjectStore,
)

__all__ = [
    "CONTROLLER_ANNOTATION_PREFIXES",
    "Applied",
    "ApplyOutcome",
    "ChangeType",
    "Invalid",
    "LabelMatcher",
    "ObjectChange",
    "ObjectList",
    "ObjectStore",
    "describe",
    "key_prefix",
    "object_key",
]

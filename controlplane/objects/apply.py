"""Apply: what a person's manifest changes in a stored object, and what it keeps.

An apply sets the object's spec, labels and annotations from the manifest. It keeps status,
ownerReferences, everything the store sets (uid, creationTimestamp, generation …) and the
annotations the control plane's controllers write (`CONTROLLER_ANNOTATION_PREFIXES`: the
revision number, rollback records) unless the manifest sets the same key, as kubectl's apply
keeps fields it does not manage. `applied` is pure; `ObjectStore.apply` does the writing.

Vocabulary: spec = every top-level field except apiVersion, kind, metadata and status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

NOT_SPEC = frozenset({"api_version", "kind", "metadata", "status"})

# Annotations the control plane's controllers write on objects people apply (the revision
# number, rollback records). A manifest does not carry them, so Apply keeps them unless the
# manifest sets the same key, as kubectl's apply keeps fields it does not manage.
CONTROLLER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/", "pilothouse.io/")


class ApplyOutcome(enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Applied:
    object: Message
    outcome: ApplyOutcome


def spec_of(message: Message) -> dict[str, Any]:
    """The spec fields of an object (see module docstring), for comparison."""
    return {
        field.name: value for field, value in message.ListFields() if field.name not in NOT_SPEC
    }


def spec_equal(a: Message, b: Message) -> bool:
    return spec_of(a) == spec_of(b)


def applied(current: Message, manifest: Message) -> Message:
    """`current` as `manifest` wants it (see module docstring); equal to `current` when the
    manifest changes nothing."""
    desired = type(current)()
    desired.CopyFrom(current)
    for field in spec_of(desired):
        desired.ClearField(field)
    desired.MergeFrom(_spec_only(manifest))
    for field in ("labels", "annotations"):
        target = getattr(desired.metadata, field)
        kept = {k: v for k, v in target.items() if field == "annotations" and _owned(k)}
        target.clear()
        target.update(kept)
        target.update(getattr(manifest.metadata, field))
    return desired


def _spec_only(message: Message) -> Message:
    spec = type(message)()
    spec.CopyFrom(message)
    for field in NOT_SPEC:
        if field in spec.DESCRIPTOR.fields_by_name:
            spec.ClearField(field)
    return spec


def _owned(key: str) -> bool:
    return key.startswith(CONTROLLER_ANNOTATION_PREFIXES)

"""How an object is kept in the byte-level store, and what reads and watches return.

Role: the value types of `ObjectStore` (`ObjectList`, `ObjectChange`, `ChangeType`,
`Invalid`) and the rules it applies to every stored object: the encoding (deterministic
protobuf without resourceVersion; the revision becomes resourceVersion on decode), the
identity fields no update may change (`keep_identity`), and a resourceVersion parsed back
into a revision.

Invariants: `decode(kind, encode(obj), r)` equals `obj` with resourceVersion `str(r)`;
once an object has a deletionTimestamp, `keep_identity` never takes it away.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from controlplane.objects.keys import describe, namespace_for
from controlplane.store import StoreError
from pilothouse.kinds import Kind, of_message
from pilothouse.manifests import names


class Invalid(StoreError):
    """The object cannot be stored as given (missing name, unknown kind …)."""


class LabelMatcher(Protocol):
    """A label selector (pilothouse.selectors.Selector satisfies this)."""

    def matches(self, labels: Any) -> bool: ...


class ChangeType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """One change seen by a watch. For DELETED, `object` is its last state, with the deletion's
    revision as resourceVersion."""

    type: ChangeType
    object: Message
    revision: int


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[Message]
    revision: int


def has_status(message: Message) -> bool:
    return "status" in message.DESCRIPTOR.fields_by_name


def kind_of(message: Message) -> Kind:
    try:
        return of_message(message)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def keep_identity(updated: Message, current: Message, kind: Kind) -> None:
    """What no caller may change: uid, creationTimestamp, name, namespace, apiVersion, kind."""
    meta, old = updated.metadata, current.metadata
    meta.uid = old.uid
    meta.creation_timestamp.CopyFrom(old.creation_timestamp)
    meta.name = old.name
    meta.namespace = old.namespace
    meta.resource_version = old.resource_version
    if old.HasField("deletion_timestamp"):  # once being deleted, always being deleted
        meta.deletion_timestamp.CopyFrom(old.deletion_timestamp)
        if old.HasField("deletion_grace_period_seconds"):
            meta.deletion_grace_period_seconds = old.deletion_grace_period_seconds
    updated.api_version = kind.info.api_version
    updated.kind = kind.info.kind


def revision(resource_version: str, kind: Kind, namespace: str, name: str) -> int:
    try:
        return int(resource_version)
    except ValueError:
        raise Invalid(
            f'{describe(kind, namespace, name)}: resourceVersion "{resource_version}" '
            "is not one this server issued"
        ) from None


def encode(message: Message) -> bytes:
    stored = type(message)()
    stored.CopyFrom(message)
    stored.metadata.resource_version = ""
    return stored.SerializeToString(deterministic=True)


def decode(kind: Kind, value: bytes, revision: int) -> Message:
    obj = kind.info.message()
    obj.ParseFromString(value)
    obj.metadata.resource_version = str(revision)
    return obj


def prepare_new(message: Message, *, now: float) -> tuple[Kind, Message]:
    """A copy of `message` as it is first stored: named (from generateName), in its
    namespace, with a fresh uid, creationTimestamp `now`, generation 1, apiVersion and kind."""
    kind = kind_of(message)
    obj = type(message)()
    obj.CopyFrom(message)
    meta = obj.metadata
    if not meta.name and meta.generate_name:
        meta.name = names.generate(meta.generate_name)
    if not meta.name:
        raise Invalid(f"a {kind.info.kind} needs metadata.name")
    meta.namespace = namespace_for(kind, meta.namespace)
    meta.uid = str(uuid.uuid4())
    meta.creation_timestamp.FromSeconds(int(now))
    meta.generation = 1
    meta.resource_version = ""
    obj.api_version = kind.info.api_version
    obj.kind = kind.info.kind
    return kind, obj

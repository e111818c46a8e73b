"""ObjectStore: typed objects (Deployment, Pod, Node …) over the byte-level Store.

Every controller and the API read and write objects through this layer and nothing else.

Vocabulary:
- key: /pilothouse/<plural>/<namespace>/<name>; cluster-scoped kinds: /pilothouse/<plural>/<name>.
- value: the object's binary protobuf, stored with `metadata.resourceVersion` cleared (it is
  derived from the entry on every read).
- spec: every top-level field of an object except apiVersion, kind, metadata and status
  (for an Event: involvedObject, reason, message …).

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

from __future__ import annotations

import asyncio
import enum
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from google.protobuf.message import Message

from controlplane.store import (
    AlreadyExists,
    Conflict,
    Entry,
    EventType,
    NotFound,
    Store,
    StoreError,
)
from pilothouse.kinds import DEFAULT_NAMESPACE, Kind, of_message

log = structlog.get_logger(__name__)

ROOT = "/pilothouse"
_NOT_SPEC = frozenset({"api_version", "kind", "metadata", "status"})
_APPLY_RETRIES = 5


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


class ApplyOutcome(enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Applied:
    object: Message
    outcome: ApplyOutcome


def key_prefix(kind: Kind, namespace: str | None = None) -> str:
    """The prefix of every key of `kind` (in `namespace` when given); ends with "/"."""
    base = f"{ROOT}/{kind.info.plural}/"
    if namespace and kind.info.namespaced:
        return f"{base}{namespace}/"
    return base


def object_key(kind: Kind, namespace: str, name: str) -> str:
    if kind.info.namespaced:
        return f"{ROOT}/{kind.info.plural}/{namespace or DEFAULT_NAMESPACE}/{name}"
    return f"{ROOT}/{kind.info.plural}/{name}"


def describe(kind: Kind, namespace: str, name: str) -> str:
    """How an object is named in messages: `deployments "web"` (kubectl's wording)."""
    where = f' in namespace "{namespace}"' if kind.info.namespaced and namespace else ""
    return f'{kind.info.plural} "{name}"{where}'


def spec_of(message: Message) -> dict[str, Any]:
    """The spec fields of an object (see module docstring), for comparison."""
    return {
        field.name: value for field, value in message.ListFields() if field.name not in _NOT_SPEC
    }


def spec_equal(a: Message, b: Message) -> bool:
    return spec_of(a) == spec_of(b)


class ObjectStore:
    """Typed CRUD, apply and watch of objects over a `Store`."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    @property
    def store(self) -> Store:
        return self._store

    # ------------------------------------------------------------------ reads

    async def get(self, kind: Kind, namespace: str, name: str) -> Message:
        namespace = _namespace_for(kind, namespace)
        try:
            entry = await self._store.get(object_key(kind, namespace, name))
        except NotFound:
            raise NotFound(f"{describe(kind, namespace, name)} not found") from None
        return _decode(kind, entry.value, entry.revision)

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        selector: LabelMatcher | None = None,
    ) -> ObjectList:
        listing = await self._store.list(key_prefix(kind, namespace))
        items = []
        for entry in listing.entries:
            obj = _decode(kind, entry.value, entry.revision)
            if selector is None or selector.matches(obj.metadata.labels):
                items.append(obj)
        return ObjectList(items=items, revision=listing.revision)

    async def watch(
        self, kind: Kind, namespace: str | None = None, *, since: int
    ) -> AsyncIterator[ObjectChange]:
        """Every change of `kind` objects (in `namespace`) after revision `since`, in order.

        Raises `Compacted` when `since` is too old (list again) and `Unavailable` when the
        store is lost (watch again from the last revision seen).
        """
        async for change in self._store.watch(key_prefix(kind, namespace), since=since):
            obj = _decode(kind, change.value, change.revision)
            if change.type is EventType.DELETE:
                change_type = ChangeType.DELETED
            elif change.created:
                change_type = ChangeType.ADDED
            else:
                change_type = ChangeType.MODIFIED
            yield ObjectChange(type=change_type, object=obj, revision=change.revision)

    # ----------------------------------------------------------------- writes

    async def create(self, message: Message) -> Message:
        """Store a new object. Sets uid, creationTimestamp, generation 1, apiVersion, kind."""
        kind, obj = self._prepare_new(message)
        meta = obj.metadata
        key = object_key(kind, meta.namespace, meta.name)
        try:
            entry = await self._store.create(key, _encode(obj))
        except AlreadyExists:
            raise AlreadyExists(
                f"{describe(kind, meta.namespace, meta.name)} already exists"
            ) from None
        meta.resource_version = str(entry.revision)
        log.debug("object.created", kind=kind.info.kind, namespace=meta.namespace, name=meta.name)
        return obj

    async def update(self, message: Message) -> Message:
        """Write spec and metadata (labels, annotations, ownerReferences …), never status.

        CAS on `metadata.resourceVersion` (empty: the current one). Bumps generation when the
        spec changed. Returns the stored object (unchanged, with no write, if nothing changed).
        """
        kind = _kind_of(message)
        current, entry = await self._current(kind, message)
        updated = type(current)()
        updated.CopyFrom(message)
        _keep_identity(updated, current, kind)
        if _has_status(updated):
            updated.ClearField("status")
            if current.HasField("status"):
                updated.status.CopyFrom(current.status)
        if not spec_equal(updated, current):
            updated.metadata.generation = current.metadata.generation + 1
        else:
            updated.metadata.generation = current.metadata.generation
        return await self._write(kind, current, updated, entry)

    async def update_status(self, message: Message) -> Message:
        """Write only `status` (CAS as `update`); spec and metadata stay as stored."""
        kind = _kind_of(message)
        current, entry = await self._current(kind, message)
        updated = type(current)()
        updated.CopyFrom(current)
        if not _has_status(updated):
            raise Invalid(f"a {kind.info.kind} has no status")
        updated.ClearField("status")
        if message.HasField("status"):
            updated.status.CopyFrom(message.status)
        return await self._write(kind, current, updated, entry)

    async def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
    ) -> Message:
        """Delete and return the object's last state. `resource_version`: only if unchanged."""
        namespace = _namespace_for(kind, namespace)
        expected = _revision(resource_version, kind, namespace, name) if resource_version else None
        key = object_key(kind, namespace, name)
        try:
            entry = await self._store.delete(key, expected_revision=expected)
        except NotFound:
            raise NotFound(f"{describe(kind, namespace, name)} not found") from None
        except Conflict:
            raise Conflict(_conflict_message(kind, namespace, name)) from None
        log.debug("object.deleted", kind=kind.info.kind, namespace=namespace, name=name)
        return _decode(kind, entry.value, entry.revision)

    async def apply(self, message: Message, *, dry_run: bool = False) -> Applied:
        """Create the object if absent; otherwise set its spec, labels and annotations.

        Status, ownerReferences, controller-owned annotations (`CONTROLLER_ANNOTATION_PREFIXES`)
        and everything the store sets are kept. An apply that would
        change nothing writes nothing (UNCHANGED, resourceVersion as it was). When the applied
        object carries a resourceVersion it must still be current (`Conflict`); without one,
        a race with another writer (a controller writing status) is retried here.
        """
        kind = _kind_of(message)
        pinned = bool(message.metadata.resource_version)
        for attempt in range(_APPLY_RETRIES):
            try:
                return await self._apply_once(kind, message, dry_run=dry_run)
            except (Conflict, AlreadyExists, NotFound):
                # The object appeared, changed or vanished between our read and our write.
                if pinned or attempt == _APPLY_RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # -------------------------------------------------------------- internals

    async def _apply_once(self, kind: Kind, message: Message, *, dry_run: bool) -> Applied:
        namespace = _namespace_for(kind, message.metadata.namespace)
        name = message.metadata.name
        try:
            current = await self.get(kind, namespace, name)
        except NotFound:
            if message.metadata.resource_version:
                raise
            if dry_run:
                _, obj = self._prepare_new(message)
                return Applied(object=obj, outcome=ApplyOutcome.CREATED)
            return Applied(object=await self.create(message), outcome=ApplyOutcome.CREATED)
        if message.metadata.resource_version and (
            message.metadata.resource_version != current.metadata.resource_version
        ):
            raise Conflict(_conflict_message(kind, namespace, name))
        desired = type(current)()
        desired.CopyFrom(current)
        for field in spec_of(desired):
            desired.ClearField(field)
        desired.MergeFrom(_spec_only(message))
        for field in ("labels", "annotations"):
            target = getattr(desired.metadata, field)
            kept = {k: v for k, v in target.items() if field == "annotations" and _owned(k)}
            target.clear()
            target.update(kept)
            target.update(getattr(message.metadata, field))
        if desired == current:
            return Applied(object=current, outcome=ApplyOutcome.UNCHANGED)
        if dry_run:
            if not spec_equal(desired, current):
                desired.metadata.generation = current.metadata.generation + 1
            return Applied(object=desired, outcome=ApplyOutcome.CONFIGURED)
        return Applied(object=await self.update(desired), outcome=ApplyOutcome.CONFIGURED)

    def _prepare_new(self, message: Message) -> tuple[Kind, Message]:
        kind = _kind_of(message)
        obj = type(message)()
        obj.CopyFrom(message)
        meta = obj.metadata
        if not meta.name and meta.generate_name:
            meta.name = meta.generate_name + secrets.token_hex(3)[:5]
        if not meta.name:
            raise Invalid(f"a {kind.info.kind} needs metadata.name")
        meta.namespace = _namespace_for(kind, meta.namespace)
        meta.uid = str(uuid.uuid4())
        meta.creation_timestamp.FromSeconds(int(self._clock()))
        meta.generation = 1
        meta.resource_version = ""
        obj.api_version = kind.info.api_version
        obj.kind = kind.info.kind
        return kind, obj

    async def _current(self, kind: Kind, message: Message) -> tuple[Message, Entry]:
        """The stored object `message` refers to, checked against its resourceVersion."""
        meta = message.metadata
        namespace = _namespace_for(kind, meta.namespace)
        key = object_key(kind, namespace, meta.name)
        try:
            entry = await self._store.get(key)
        except NotFound:
            raise NotFound(f"{describe(kind, namespace, meta.name)} not found") from None
        if meta.resource_version and (
            _revision(meta.resource_version, kind, namespace, meta.name) != entry.revision
        ):
            raise Conflict(_conflict_message(kind, namespace, meta.name))
        return _decode(kind, entry.value, entry.revision), entry

    async def _write(self, kind: Kind, current: Message, updated: Message, entry: Entry) -> Message:
        if updated == current:
            return current
        meta = updated.metadata
        try:
            new_entry = await self._store.update(
                entry.key, _encode(updated), expected_revision=entry.revision
            )
        except NotFound:
            raise NotFound(f"{describe(kind, meta.namespace, meta.name)} not found") from None
        except Conflict:
            raise Conflict(_conflict_message(kind, meta.namespace, meta.name)) from None
        meta.resource_version = str(new_entry.revision)
        return updated


def _spec_only(message: Message) -> Message:
    spec = type(message)()
    spec.CopyFrom(message)
    for field in _NOT_SPEC:
        if field in spec.DESCRIPTOR.fields_by_name:
            spec.ClearField(field)
    return spec


def _has_status(message: Message) -> bool:
    return "status" in message.DESCRIPTOR.fields_by_name


def _kind_of(message: Message) -> Kind:
    try:
        return of_message(message)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _namespace_for(kind: Kind, namespace: str | None) -> str:
    if not kind.info.namespaced:
        return ""
    return namespace or DEFAULT_NAMESPACE


def _keep_identity(updated: Message, current: Message, kind: Kind) -> None:
    """What no caller may change: uid, creationTimestamp, name, namespace, apiVersion, kind."""
    meta, old = updated.metadata, current.metadata
    meta.uid = old.uid
    meta.creation_timestamp.CopyFrom(old.creation_timestamp)
    meta.name = old.name
    meta.namespace = old.namespace
    meta.resource_version = old.resource_version
    updated.api_version = kind.info.api_version
    updated.kind = kind.info.kind


def _revision(resource_version: str, kind: Kind, namespace: str, name: str) -> int:
    try:
        return int(resource_version)
    except ValueError:
        raise Invalid(
            f'{describe(kind, namespace, name)}: resourceVersion "{resource_version}" '
            "is not one this server issued"
        ) from None


def _conflict_message(kind: Kind, namespace: str, name: str) -> str:
    return (
        f"Operation cannot be fulfilled on {describe(kind, namespace, name)}: the object has "
        "been modified; please apply your changes to the latest version and try again"
    )


def _encode(message: Message) -> bytes:
    stored = type(message)()
    stored.CopyFrom(message)
    stored.metadata.resource_version = ""
    return stored.SerializeToString(deterministic=True)


def _decode(kind: Kind, value: bytes, revision: int) -> Message:
    obj = kind.info.message()
    obj.ParseFromString(value)
    obj.metadata.resource_version = str(revision)
    return obj


# Annotations the control plane's controllers write on objects people apply (the revision
# number, rollback records). A manifest does not carry them, so Apply keeps them unless the
# manifest sets the same key, as kubectl's apply keeps fields it does not manage.
CONTROLLER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/", "pilothouse.io/")


def _owned(key: str) -> bool:
    return key.startswith(CONTROLLER_ANNOTATION_PREFIXES)

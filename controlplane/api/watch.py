"""A client's view of a watch: the changes to the objects a selector picks, as they happen.

Vocabulary: the *view* is the set of objects the client has been told about and not yet told
are gone.

Invariants:
- From an empty resourceVersion, the stream starts with the current state as ADDED events,
  then carries every change after it; the view is then complete, so:
  - an object that starts to match the selectors arrives as ADDED, one that stops matching
    leaves as DELETED (as Kubernetes' watch cache does);
  - when the store compacts away history the watch needed, the stream lists again and sends
    only the difference from the view (ADDED, MODIFIED, DELETED), never a gap.
- From a given resourceVersion, the view is only what this stream sent: changes after that
  revision are sent as the store reports them, and a compaction ends the stream with
  `Compacted` (the client lists again), as etcd and Kubernetes do.
- Field selectors compare the object's fields by their JSON paths (`spec.nodeName`,
  `status.phase`, `metadata.name`); a missing field reads as "".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from google.protobuf.message import Message

from controlplane.objects import ChangeType, Invalid, ObjectStore
from controlplane.store import Compacted
from pilothouse import selectors
from pilothouse.kinds import Kind

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Filter:
    """What a client asked to see."""

    labels: selectors.Selector | None
    fields: list[selectors.FieldRequirement]

    @classmethod
    def parse(cls, *, label_selector: str, field_selector: str) -> Filter:
        labels = selectors.parse(label_selector) if label_selector.strip() else None
        return cls(labels=labels, fields=selectors.parse_fields(field_selector))

    def matches(self, obj: Message) -> bool:
        if self.labels is not None and not self.labels.matches(obj.metadata.labels):
            return False
        if self.fields:
            values = {r.path: field_value(obj, r.path) for r in self.fields}
            return selectors.fields_match(self.fields, values)
        return True


@dataclass(frozen=True, slots=True)
class ViewChange:
    type: ChangeType
    object: Message


def field_value(obj: Message, path: str) -> str:
    """The value at a dotted JSON path ("spec.nodeName") as a string; "" when unset."""
    current: Any = obj
    for part in path.split("."):
        if isinstance(current, Message):
            fd = next((f for f in current.DESCRIPTOR.fields if f.json_name == part), None)
            if fd is None:
                fd = current.DESCRIPTOR.fields_by_name.get(part)
            if fd is None:
                return ""
            current = getattr(current, fd.name)
        elif isinstance(current, Mapping):
            current = current.get(part, "")
        else:
            return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, str | int | float):
        return str(current)
    return ""


def _key(obj: Message) -> tuple[str, str]:
    return (obj.metadata.namespace, obj.metadata.name)


async def view(
    objects: ObjectStore,
    *,
    kind: Kind,
    namespace: str | None,
    selection: Filter,
    resource_version: str,
) -> AsyncIterator[ViewChange]:
    """The changes a watching client sees (see the module docstring)."""
    known: dict[tuple[str, str], Message] = {}
    complete = not resource_version
    if complete:
        listing = await objects.list(kind, namespace)
        for obj in listing.items:
            if selection.matches(obj):
                known[_key(obj)] = obj
                yield ViewChange(ChangeType.ADDED, obj)
        since = listing.revision
    else:
        try:
            since = int(resource_version)
        except ValueError:
            raise Invalid(
                f'resourceVersion "{resource_version}" is not one this server issued'
            ) from None

    while True:
        try:
            async for change in objects.watch(kind, namespace, since=since):
                since = change.revision
                out = _apply(known, change.type, change.object, selection, complete=complete)
                if out is not None:
                    yield out
            return  # the store closed: the server is stopping
        except Compacted:
            if not complete:
                raise
            log.info("watch.relist", kind=kind.info.plural, since=since)
            listing = await objects.list(kind, namespace)
            for out in _difference(known, listing.items, selection):
                yield out
            since = listing.revision


def _apply(
    known: dict[tuple[str, str], Message],
    change_type: ChangeType,
    obj: Message,
    selection: Filter,
    *,
    complete: bool,
) -> ViewChange | None:
    key = _key(obj)
    matched = selection.matches(obj)
    if change_type is ChangeType.DELETED:
        if key in known or (not complete and matched):
            known.pop(key, None)
            return ViewChange(ChangeType.DELETED, obj)
        return None
    if matched:
        if key in known:
            out_type = ChangeType.MODIFIED
        elif complete:
            out_type = ChangeType.ADDED
        else:
            out_type = change_type
        known[key] = obj
        return ViewChange(out_type, obj)
    if key in known:
        del known[key]
        return ViewChange(ChangeType.DELETED, obj)
    return None


def _difference(
    known: dict[tuple[str, str], Message], items: list[Message], selection: Filter
) -> list[ViewChange]:
    out: list[ViewChange] = []
    current = {_key(obj): obj for obj in items if selection.matches(obj)}
    for key, old in list(known.items()):
        if key not in current:
            del known[key]
            out.append(ViewChange(ChangeType.DELETED, old))
    for key, obj in current.items():
        old = known.get(key)
        if old is None:
            out.append(ViewChange(ChangeType.ADDED, obj))
        elif old.metadata.resource_version != obj.metadata.resource_version:
            out.append(ViewChange(ChangeType.MODIFIED, obj))
        known[key] = obj
    return out

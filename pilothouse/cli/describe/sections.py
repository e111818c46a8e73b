"""The sections every kind shows the same way: metadata, conditions, and the object's events.

Invariant: events are matched to the object by kind and name, and by uid when both carry one,
and listed oldest first by last timestamp; when they cannot be read the section says <none>.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from pilothouse import kinds
from pilothouse.cli import tables
from pilothouse.cli.sheet import NONE, Sheet, mapping, timestamp
from pilothouse.client import Client, ClientError
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o


def metadata(sheet: Sheet, meta: o.ObjectMeta, *, namespaced: bool = True) -> None:
    sheet.field("Name", meta.name)
    if namespaced:
        sheet.field("Namespace", meta.namespace)
    sheet.field("CreationTimestamp", timestamp(meta.creation_timestamp))
    sheet.field("Labels", mapping(meta.labels))
    sheet.field("Annotations", mapping(meta.annotations, separator=": "))


def int_or_percent(value: struct_pb2.Value, default: str) -> str:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return str(int(value.number_value))
    if kind == "string_value":
        return value.string_value
    return default


def condition_table(sheet: Sheet, conditions: Sequence[o.Condition], *, with_reason: bool) -> None:
    if not conditions:
        sheet.field("Conditions", NONE)
        return
    sheet.heading("Conditions:")
    headers = ("Type", "Status", "Reason") if with_reason else ("Type", "Status")
    rows = [
        (c.type, c.status, c.reason or NONE) if with_reason else (c.type, c.status)
        for c in conditions
    ]
    sheet.table(headers, rows)


def event(sheet: Sheet, e: o.Event) -> None:
    sheet.field("Name", e.metadata.name)
    sheet.field("Namespace", e.metadata.namespace)
    ref = e.involved_object
    sheet.field("Involved Object", f"{ref.kind}/{ref.name}")
    sheet.field("Type", e.type or "Normal")
    sheet.field("Reason", e.reason)
    sheet.field("Message", e.message)
    sheet.field("Source", e.source.component)
    sheet.field("Count", e.count)
    sheet.field("First Timestamp", timestamp(e.first_timestamp))
    sheet.field("Last Timestamp", timestamp(e.last_timestamp))


async def events_of(client: Client, obj: Message) -> list[o.Event]:
    """The events about `obj`, oldest first; none when they cannot be read."""
    kind = kinds.of_message(obj)
    meta = obj.metadata  # type: ignore[attr-defined]
    try:
        listed = await client.list(
            Kind.EVENT, namespace=meta.namespace if kind.info.namespaced else ""
        )
    except ClientError:
        return []
    found = []
    for event in listed.items:
        if not isinstance(event, o.Event):
            continue
        ref = event.involved_object
        same_uid = not (ref.uid and meta.uid) or ref.uid == meta.uid
        if ref.kind == kind.info.kind and ref.name == meta.name and same_uid:
            found.append(event)
    found.sort(key=tables.event_time)
    return found


def event_table(sheet: Sheet, events: list[o.Event], *, now: datetime) -> None:
    if not events:
        sheet.field("Events", NONE)
        return
    sheet.heading("Events:")
    rows = []
    for e in events:
        last = e.last_timestamp if e.HasField("last_timestamp") else e.metadata.creation_timestamp
        when = tables.age(last, now)
        if e.count > 1 and e.HasField("first_timestamp"):
            when = f"{when} (x{e.count} over {tables.age(e.first_timestamp, now)})"
        message = " ".join(e.message.split("\n")).strip()  # exec probe output may be lines
        rows.append((e.type or "Normal", e.reason, when, e.source.component or NONE, message))
    sheet.table(("Type", "Reason", "Age", "From", "Message"), rows)

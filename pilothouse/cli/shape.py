"""The Kubernetes JSON shape of objects, for `-o json|yaml` and for reading such output back.

Invariants: `to_k8s` gives apiVersion, kind, metadata, spec, status in that order, with the
protobuf JSON names (camelCase) and Kubernetes' value forms: 64-bit integers as numbers (not
the protobuf JSON strings), IntOrString values that are whole numbers as integers (`1`, never
`1.0`), timestamps as RFC 3339 strings, bytes (a Secret's data) base64-encoded. Fields that
are unset are left out, and so is an empty status. `from_k8s(to_k8s(m), kind) == m` for
every stored object.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pilothouse import kinds
from pilothouse.manifests.decode import to_message
from pilothouse.manifests.problems import ManifestError, Problem

_ORDER = ("apiVersion", "kind", "metadata", "spec", "status")


def to_k8s(message: Message) -> dict[str, Any]:
    """The Kubernetes object shape of a Deployment, Pod, Node … message."""
    info = kinds.of_message(message).info
    body = _encode(message)
    body["apiVersion"] = info.api_version
    body["kind"] = info.kind
    if not body.get("status"):
        body.pop("status", None)
    ordered = {key: body.pop(key) for key in _ORDER if key in body}
    ordered.update(body)
    return ordered


def from_k8s(data: Mapping[str, Any], kind: kinds.Kind | str) -> Message:
    """Read the Kubernetes shape back into a message (no defaults applied).

    Raises `ManifestError` naming every unknown field and wrongly typed value.
    """
    if isinstance(kind, str):
        kind = kinds.parse(kind)
    message, errors = to_message(data, kind.info.message)
    if errors:
        raise ManifestError(Problem("", 0, field, text) for field, text in errors)
    return message


def _encode(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.json_name] = {k: _value(v, value_fd) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.json_name] = [_value(v, fd) for v in value]
        else:
            out[fd.json_name] = _value(value, fd)
    return out


def _value(value: Any, fd: FieldDescriptor) -> Any:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()  # a Secret's data, as Kubernetes shows it
    if fd.type != FieldDescriptor.TYPE_MESSAGE:
        return value
    full_name = fd.message_type.full_name
    if full_name == "google.protobuf.Timestamp":
        return value.ToJsonString()
    if full_name == "google.protobuf.Value":
        return _whole(json_format.MessageToDict(value))
    return _encode(value)


def _whole(value: Any) -> Any:
    """IntOrString and other JSON values: 1.0 prints as 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value

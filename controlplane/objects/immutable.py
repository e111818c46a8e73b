"""What an update may not change in a stored object (ConfigMaps and Secrets).

Rules (core/v1's update validation):
- a ConfigMap or Secret whose stored `immutable` is true keeps its data (`data`,
  `binaryData`) and stays immutable: `Forbidden: field is immutable when `immutable` is set`;
- a Secret's `type` never changes: `Invalid value: …: field is immutable`.

Pure: `problems(current, updated)` returns (field path, message) pairs; the ObjectStore raises
them as a ManifestError, so nothing is written (apply and update alike).
"""

from __future__ import annotations

from google.protobuf.message import Message

from pilothouse.v1 import objects_pb2

_IMMUTABLE = "Forbidden: field is immutable when `immutable` is set"


def problems(current: Message, updated: Message) -> list[tuple[str, str]]:
    if not isinstance(current, objects_pb2.ConfigMap | objects_pb2.Secret):
        return []
    found: list[tuple[str, str]] = []
    if current.immutable:
        if not updated.HasField("immutable") or not updated.immutable:
            found.append(("immutable", _IMMUTABLE))
        fields = (
            ("data", "binary_data") if isinstance(current, objects_pb2.ConfigMap) else ("data",)
        )
        for field in fields:
            if dict(getattr(current, field)) != dict(getattr(updated, field)):
                json_name = "binaryData" if field == "binary_data" else "data"
                found.append((json_name, _IMMUTABLE))
    if isinstance(current, objects_pb2.Secret) and current.type != updated.type:
        found.append(("type", f'Invalid value: "{updated.type}": field is immutable'))
    return found

"""Field errors: why the control plane rejected an object, field by field, as it sends them in
a call's trailing metadata.

Invariant: `field_problems` never raises: metadata it cannot decode counts as no field errors
(the call's own status details are then what a person reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from pilothouse.v1 import controlplane_pb2 as api

FIELD_ERRORS_METADATA = "pilothouse-field-errors-bin"
STATUS_DETAILS_METADATA = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    file: str
    document: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: document {self.document}: " if self.file else ""
        path = f"{self.field}: " if self.field else ""
        return f"{where}{path}{self.message}"


def field_problems(metadata: object) -> tuple[FieldProblem, ...]:
    """Field errors carried in trailing metadata, as the control plane sends them.

    Accepts `pilothouse-field-errors-bin` (a serialized `FieldErrors`) and the standard
    `grpc-status-details-bin` (a `google.rpc.Status` whose details pack a `FieldErrors`).
    """
    for key, value in _pairs(metadata):
        if not isinstance(value, bytes):
            continue
        try:
            if key == FIELD_ERRORS_METADATA:
                return _problems(api.FieldErrors.FromString(value))
            if key == STATUS_DETAILS_METADATA:
                for detail in _status_details(value):
                    if detail.type_url.endswith("pilothouse.v1.FieldErrors"):
                        return _problems(api.FieldErrors.FromString(detail.value))
        except (DecodeError, ValueError, IndexError):
            continue
    return ()


def _pairs(metadata: object) -> list[tuple[str, object]]:
    if metadata is None:
        return []
    pairs: list[tuple[str, object]] = []
    for item in metadata:  # type: ignore[attr-defined]
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        pairs.append((key, value))
    return pairs


def _problems(errors: api.FieldErrors) -> tuple[FieldProblem, ...]:
    return tuple(
        FieldProblem(file=e.file, document=e.document, field=e.field, message=e.message)
        for e in errors.errors
    )


def _status_details(data: bytes) -> list[any_pb2.Any]:
    """The `details` (field 3, repeated Any) of a serialized google.rpc.Status.

    googleapis-common-protos is not a dependency, so the three-field message is read by hand.
    """
    details: list[any_pb2.Any] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            chunk = data[pos : pos + length]
            pos += length
            if number == 3:
                details.append(any_pb2.Any.FromString(chunk))
        else:
            raise ValueError(f"unexpected wire type {wire} in google.rpc.Status")
    return details


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7

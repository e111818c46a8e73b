"""Objects as protobuf wire bytes straight from the store, for Lists of thousands of objects.

A stored value is the object's own encoding with an empty resourceVersion (`stored.encode`).
Appending an encoded `metadata { resourceVersion: R }` to it gives the object at revision R,
because a protobuf parser merges repeated occurrences of a message field (the encoding's
rule). So a List can be answered by concatenating stored values, with no parse and no copy
of each object in Python.

Invariant: parsing `listed(...)`'s bytes of an entry gives exactly what `ObjectStore` decodes
from it (Secrets are opened first, as on every read).
"""

from __future__ import annotations

from controlplane.objects.keys import key_prefix
from controlplane.objects.store import ObjectStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

_LEN = 2  # the wire type of bytes, strings and messages
_RESOURCE_VERSION = objects_pb2.ObjectMeta.DESCRIPTOR.fields_by_name["resource_version"].number


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """The encoding of a length-delimited field (a message, bytes or a string)."""
    return varint(number << 3 | _LEN) + varint(len(payload)) + payload


async def listed(
    objects: ObjectStore, kind: Kind, namespace: str | None = None
) -> tuple[list[bytes], int]:
    """The encodings of every object of `kind` (in `namespace`) and the revision of the list."""
    listing = await objects.store.list(key_prefix(kind, namespace))
    metadata = kind.info.message.DESCRIPTOR.fields_by_name["metadata"].number
    encryption = objects.encryption
    sealed = encryption is not None and kind in encryption.kinds
    out = []
    for entry in listing.entries:
        value = encryption.open(entry.key, entry.value) if sealed else entry.value  # type: ignore[union-attr]
        version = field(_RESOURCE_VERSION, str(entry.revision).encode())
        out.append(value + field(metadata, version))
    return out, listing.revision

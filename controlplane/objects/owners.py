"""Owner references: which object controls another (a Pod's ReplicaSet, a ReplicaSet's
Deployment).

Invariant: an object has at most one controlling owner, the reference with `controller` set;
"owned by" compares uids, so a re-created namesake of the owner owns nothing of the old one.
`key_of` is the work key ("namespace/name") a change means to the controller of a kind.
"""

from __future__ import annotations

from google.protobuf.message import Message

from pilothouse.v1 import objects_pb2


def controller_of(obj: Message) -> objects_pb2.OwnerReference | None:
    for ref in obj.metadata.owner_references:
        if ref.controller:
            return ref
    return None


def owned_by(obj: Message, uid: str) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.uid == uid


def key_of(obj: Message, *, owner: type[Message]) -> str | None:
    """The key of the `owner`-kind object a change of `obj` concerns: `obj`'s own if it is
    one, else its controlling owner's if that is of that kind (by name: the owner's cache
    tells whether it is still the same one), else None."""
    if isinstance(obj, owner):
        return f"{obj.metadata.namespace}/{obj.metadata.name}"
    ref = controller_of(obj)
    if ref is not None and ref.kind == owner.DESCRIPTOR.name:
        return f"{obj.metadata.namespace}/{ref.name}"
    return None

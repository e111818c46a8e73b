"""Owner references: which object controls another (a Pod's ReplicaSet, a ReplicaSet's
Deployment).

Invariant: an object has at most one controlling owner, the reference with `controller` set;
"owned by" compares uids, so a re-created namesake of the owner owns nothing of the old one.
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

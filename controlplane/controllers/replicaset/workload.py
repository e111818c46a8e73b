"""What a ReplicaSet and a ReplicationController have in common, read the same way.

A ReplicaSet selects with `spec.selector.matchLabels`, a ReplicationController with the plain
map `spec.selector`; both have `spec.replicas` (default 1), `spec.template`,
`spec.minReadySeconds` and the same status fields (`ReplicaSetStatus`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from google.protobuf.message import Message

from pilothouse.v1 import objects_pb2

ReplicaWorkload = objects_pb2.ReplicaSet | objects_pb2.ReplicationController


def selector_of(obj: Message) -> Mapping[str, str]:
    if isinstance(obj, objects_pb2.ReplicationController):
        return obj.spec.selector
    return obj.spec.selector.match_labels


def matcher(obj: Message) -> Callable[[Mapping[str, str]], bool]:
    wanted = dict(selector_of(obj))

    def matches(labels: Mapping[str, str]) -> bool:
        return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())

    return matches


def replicas_of(obj: Message) -> int:
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1

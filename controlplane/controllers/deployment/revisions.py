"""Names and identities of a Deployment's revisions (ReplicaSets) and of their pods.

Vocabulary:
- template hash: 10 characters from Kubernetes' safe alphabet [bcdfghjklmnpqrstvwxz2456789],
  a stable hash of the Deployment's pod template; it is the `pod-template-hash` label.
- revision: one ReplicaSet per template hash, named `<deployment>-<template hash>`, carrying the
  `deployment.kubernetes.io/revision` annotation (1, 2, …), owned by its Deployment.
- ordinal: a pod's slot number within its ReplicaSet; its name is
  `<deployment>-<template hash>-<suffix>`, the suffix 5 safe characters hashed from the
  Deployment's uid, the template hash and the ordinal.

Invariants: the same template always gives the same hash (deterministic protobuf encoding;
the hash label itself is left out), and the same (deployment, template, ordinal) always gives
the same pod name, so a controller that crashed half-way re-derives exactly the names it was
creating and cannot create duplicates. A Deployment deleted and re-created gets a new uid, so
its pods never collide with the leftovers of the old one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from google.protobuf.message import Message

from pilothouse.v1 import objects_pb2

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
HASH_LENGTH = 10
SUFFIX_LENGTH = 5


def _encode(data: bytes, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(data).digest(), "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    return "".join(chars)


def template_hash(template: objects_pb2.PodTemplateSpec) -> str:
    canonical = objects_pb2.PodTemplateSpec()
    canonical.CopyFrom(template)
    canonical.metadata.labels.pop(HASH_LABEL, None)
    return _encode(canonical.SerializeToString(deterministic=True), HASH_LENGTH)


def replicaset_name(deployment: str, hash_: str) -> str:
    return f"{deployment}-{hash_}"


def pod_name(*, replicaset: str, deployment_uid: str, hash_: str, ordinal: int) -> str:
    suffix = _encode(f"{deployment_uid}/{hash_}/{ordinal}".encode(), SUFFIX_LENGTH)
    return f"{replicaset}-{suffix}"


def pod_names(*, replicaset: str, deployment_uid: str, hash_: str) -> Iterator[str]:
    """Pod names by ordinal 0, 1, 2 … (without repeats)."""
    seen: set[str] = set()
    ordinal = 0
    while True:
        name = pod_name(
            replicaset=replicaset, deployment_uid=deployment_uid, hash_=hash_, ordinal=ordinal
        )
        ordinal += 1
        if name not in seen:
            seen.add(name)
            yield name


def revision_of(obj: Message) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0

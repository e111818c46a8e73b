"""Names and identities of a Deployment's revisions (ReplicaSets) and of their pods.

Vocabulary:
- template hash: 10 characters from Kubernetes' safe alphabet [bcdfghjklmnpqrstvwxz2456789],
  a stable hash of the Deployment's pod template; it is the `pod-template-hash` label.
- revision: one ReplicaSet per template hash, named `<deployment>-<template hash>` (the
  Deployment's name cut so that the whole is at most 253 characters), carrying the
  `deployment.kubernetes.io/revision` annotation (1, 2, …), owned by its Deployment. Its pods
  are named by the store from `generateName: <replicaset>-` (see `replicaset`).

Invariants: the same template always gives the same hash (deterministic protobuf encoding;
the hash label itself is left out), so a controller that crashed half-way finds the
ReplicaSet it was creating under the same name.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from pilothouse.manifests import names
from pilothouse.v1 import objects_pb2

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
HASH_LENGTH = 10
MAX_NAME_LENGTH = 253  # a DNS-1123 subdomain, which a ReplicaSet's name is


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
    """`<deployment>-<hash>`, at most 253 characters (a 250-character Deployment name is cut)."""
    return names.with_suffix(deployment, hash_, limit=MAX_NAME_LENGTH)


def revision_of(obj: Message) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0

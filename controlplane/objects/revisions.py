"""ControllerRevisions: the revisions of a DaemonSet's or StatefulSet's pod template.

Vocabulary (Kubernetes' apps/v1 history):
- template hash: 10 characters from Kubernetes' safe alphabet, a stable hash of the pod
  template; pods carry it as the `controller-revision-hash` label;
- revision: a ControllerRevision named `<owner>-<template hash>`, controlled by its owner, whose
  `data` is {"spec": {"template": <the template as JSON>}} and whose `revision` number orders
  them (1, 2, …); going back to an earlier template renumbers that revision as the newest.

Invariants: `template_hash` depends only on the template's content; `template_of` returns the
template a revision was made from; `ensure` is idempotent (a retry finds the revision it made).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.objects.owners import owned_by
from controlplane.objects.podtemplate import owner_reference
from controlplane.objects.store import ObjectStore
from controlplane.store import AlreadyExists, Conflict, NotFound
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

HASH_LABEL = "controller-revision-hash"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: objects_pb2.PodTemplateSpec, *, collisions: int = 0) -> str:
    digest = hashlib.sha256(template.SerializeToString(deterministic=True))
    digest.update(str(collisions).encode())
    number = int.from_bytes(digest.digest()[:8], "big")
    out = []
    for _ in range(10):
        number, rest = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[rest])
    return "".join(out)


def template_of(revision: objects_pb2.ControllerRevision) -> objects_pb2.PodTemplateSpec:
    template = objects_pb2.PodTemplateSpec()
    data = json_format.MessageToDict(revision.data)
    json_format.ParseDict(data.get("spec", {}).get("template", {}), template)
    return template


def owned_revisions(
    revisions: Iterable[objects_pb2.ControllerRevision], owner: Message
) -> list[objects_pb2.ControllerRevision]:
    """The owner's revisions, oldest number first."""
    mine = [r for r in revisions if owned_by(r, owner.metadata.uid)]
    return sorted(mine, key=lambda r: r.revision)


def _new(
    owner: Message, template: objects_pb2.PodTemplateSpec, *, hash_: str, number: int
) -> objects_pb2.ControllerRevision:
    revision = objects_pb2.ControllerRevision()
    revision.metadata.name = f"{owner.metadata.name}-{hash_}"
    revision.metadata.namespace = owner.metadata.namespace
    revision.metadata.labels.update(owner.spec.selector.match_labels)
    revision.metadata.labels[HASH_LABEL] = hash_
    revision.metadata.owner_references.append(owner_reference(owner))
    revision.data.update(
        {
            "spec": {
                "template": json_format.MessageToDict(template, preserving_proto_field_name=False)
            }
        }
    )
    revision.revision = number
    return revision


async def ensure(
    objects: ObjectStore,
    owner: Message,
    existing: Sequence[objects_pb2.ControllerRevision],
) -> objects_pb2.ControllerRevision:
    """The revision of the owner's current template: found, renumbered as the newest when it
    is an older one, or created."""
    template = owner.spec.template
    hash_ = template_hash(template)
    newest = max((r.revision for r in existing), default=0)
    for revision in existing:
        if revision.metadata.labels.get(HASH_LABEL) == hash_:
            if revision.revision == newest:
                return revision
            updated = objects_pb2.ControllerRevision()
            updated.CopyFrom(revision)
            updated.revision = newest + 1
            return await objects.update(updated)
    wanted = _new(owner, template, hash_=hash_, number=newest + 1)
    try:
        return await objects.create(wanted)
    except AlreadyExists:
        found = await objects.get(
            Kind.CONTROLLERREVISION, wanted.metadata.namespace, wanted.metadata.name
        )
        if not owned_by(found, owner.metadata.uid):
            raise Conflict(
                f'controllerrevisions "{wanted.metadata.name}" exists and belongs to another owner'
            ) from None
        return found


async def trim(
    objects: ObjectStore,
    revisions: Sequence[objects_pb2.ControllerRevision],
    *,
    limit: int,
    in_use: set[str],
) -> None:
    """Delete the oldest revisions beyond `limit`, keeping any whose hash pods still use."""
    spare = [r for r in revisions if r.metadata.labels.get(HASH_LABEL) not in in_use]
    spare.sort(key=lambda r: r.revision)
    for revision in spare[: max(len(spare) - limit, 0)]:
        try:
            await objects.delete(
                Kind.CONTROLLERREVISION,
                revision.metadata.namespace,
                revision.metadata.name,
                resource_version=revision.metadata.resource_version,
            )
        except (Conflict, NotFound):
            continue  # changed or gone meanwhile: a revision kept is harmless

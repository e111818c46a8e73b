"""`rollout history`: a Deployment's revisions as rows, as kubectl's table, or one in full.

Invariant: a row shows each container's image as it runs (with its digest) and, where it
differs, the tag as written in the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from pilothouse.cli.rollout.revisions import CHANGE_CAUSE, ORIGINAL_IMAGE, owned, revision_of
from pilothouse.cli.shape import to_k8s
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class HistoryRow:
    revision: int
    change_cause: str
    images: tuple[tuple[str, str, str], ...]  # (container, image as run, tag as written)
    replicaset: str


def history_rows(
    deployment: objects_pb2.Deployment, replicasets: Sequence[objects_pb2.ReplicaSet]
) -> list[HistoryRow]:
    rows = []
    for rs in owned(deployment, replicasets):
        annotations = rs.spec.template.metadata.annotations
        images = tuple(
            (c.name, c.image, annotations.get(f"{ORIGINAL_IMAGE}{c.name}", c.image))
            for c in rs.spec.template.spec.containers
        )
        rows.append(
            HistoryRow(
                revision=revision_of(rs),
                change_cause=rs.metadata.annotations.get(CHANGE_CAUSE, ""),
                images=images,
                replicaset=rs.metadata.name,
            )
        )
    return rows


def history_table(name: str, rows: Sequence[HistoryRow]) -> str:
    lines = [f"deployment.apps/{name}", ""]
    table = [("REVISION", "CHANGE-CAUSE", "IMAGES")]
    for row in rows:
        images = ", ".join(
            f"{c}={image}" + (f" ({tag})" if tag != image else "") for c, image, tag in row.images
        )
        table.append((str(row.revision), row.change_cause or "<none>", images))
    widths = [max(len(r[i]) for r in table) for i in range(2)]
    for revision, cause, images in table:
        lines.append(f"{revision:<{widths[0]}}  {cause:<{widths[1]}}  {images}".rstrip())
    return "\n".join(lines) + "\n"


def revision_detail(name: str, rs: objects_pb2.ReplicaSet) -> str:
    """`rollout history --revision N`: the revision's pod template."""
    body = yaml.safe_dump(to_k8s(rs)["spec"]["template"], sort_keys=False)
    header = f"deployment.apps/{name} with revision #{revision_of(rs)}\nPod Template:\n"
    return header + "".join(f"  {line}\n" for line in body.splitlines())

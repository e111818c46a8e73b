"""What one pass of the deployment controller knows: the `Context` every step reads and updates.

Vocabulary: the current revision is the ReplicaSet running the Deployment's template (None
until it is created); the others are old revisions. `pods` holds each revision's pods by
ReplicaSet name, as counted in this pass (pods deleted by this process are left out).

Invariants: `replicasets` always holds the freshest copy of each ReplicaSet this pass knows,
and `current` is the same object as its entry there (`replace` keeps both in step, so a
later step never writes an older copy than an earlier step wrote). Time is read once per
pass (`now`), so every step judges availability at the same instant. `Totals` is what the
ReplicaSets' pods amount to once every target was written and every pod set converged.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.controllers.deployment import history, progress, revisions, rollout, status
from pilothouse.v1 import objects_pb2


@dataclass(slots=True)
class Context:
    deployment: objects_pb2.Deployment
    replicasets: list[objects_pb2.ReplicaSet]  # owned by the Deployment
    pods: dict[str, list[objects_pb2.Pod]]  # by ReplicaSet name
    current: objects_pb2.ReplicaSet | None
    desired: int  # spec.replicas (default 1)
    strategy: rollout.Strategy
    now: float
    started: progress.Reason | None = None  # the current revision became current in this pass

    @property
    def uid(self) -> str:
        return self.deployment.metadata.uid

    @property
    def olds(self) -> list[objects_pb2.ReplicaSet]:
        """Every revision but the current one."""
        return [rs for rs in self.replicasets if not self.is_current(rs)]

    def is_current(self, rs: objects_pb2.ReplicaSet) -> bool:
        return self.current is not None and rs.metadata.name == self.current.metadata.name

    def counts_of(self, rs: objects_pb2.ReplicaSet) -> status.Counts:
        return self.count(self.pods[rs.metadata.name])

    def count(self, pods: list[objects_pb2.Pod]) -> status.Counts:
        min_ready = self.deployment.spec.min_ready_seconds
        return status.count(pods, min_ready_seconds=min_ready, now=self.now)

    def view(self, rs: objects_pb2.ReplicaSet) -> rollout.Revision:
        """`rs` as the rollout planner sees it."""
        stamp = rs.metadata.creation_timestamp
        return rollout.Revision(
            name=rs.metadata.name,
            number=revisions.revision_of(rs),
            replicas=rs.spec.replicas,
            available=min(self.counts_of(rs).available, rs.spec.replicas),
            created=stamp.seconds + stamp.nanos / 1e9,
            desired_annotation=history.int_annotation(rs, history.DESIRED_REPLICAS),
            max_annotation=history.int_annotation(rs, history.MAX_REPLICAS),
        )

    def add(self, rs: objects_pb2.ReplicaSet) -> None:
        """A revision created in this pass becomes the current one (it has no pods yet)."""
        self.replicasets.append(rs)
        self.pods[rs.metadata.name] = []
        self.current = rs

    def replace(self, rs: objects_pb2.ReplicaSet) -> None:
        """A newer copy of a known revision (this pass wrote it)."""
        name = rs.metadata.name
        self.replicasets = [rs if r.metadata.name == name else r for r in self.replicasets]
        if self.current is not None and self.current.metadata.name == name:
            self.current = rs


@dataclass(frozen=True, slots=True)
class Totals:
    """What the Deployment's pods amount to after the pass converged them."""

    counts: status.Counts  # summed over every revision
    targets: int  # the revisions' spec.replicas, summed
    updated: int  # active pods of the current revision

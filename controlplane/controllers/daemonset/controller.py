"""The reconciler of DaemonSets: one pod on every eligible node, updated by its strategy.

One pass over one DaemonSet (key "namespace/name"):
1. its revision: the ControllerRevision of its current template (made, or renumbered as the
   newest when the template went back to an earlier one); older revisions beyond
   revisionHistoryLimit that no pod uses are deleted;
2. its pods (adopted and released by selector, `objects.adoption`), grouped by node; finished
   pods are deleted (and so replaced);
3. unless pods it created are not yet observed, or it is Terminating: `placement.plan` says
   which nodes need a pod of the current revision and which pods go (nodes gone or no longer
   eligible, duplicates, old pods the update replaces now);
4. pods are created bound to their node (`spec.nodeName`, as the DaemonSet controller did
   before the scheduler placed them), labelled with the revision hash and
   `pod-template-generation`;
5. status: desired/current/misscheduled/ready/updated/available/unavailable counts.

Invariants: a node never gets a second pod of one revision from this controller (creates are
under expectations); level-triggered: nodes joining, leaving or changing labels or taints are
handled by the next pass (node changes enqueue every DaemonSet).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from controlplane.cache.informer import Informer, Notice
from controlplane.controllers.daemonset import placement
from controlplane.controllers.reconciling import Reconciling
from controlplane.events import EventType
from controlplane.objects import adoption, owners, revisions
from controlplane.objects.pods import is_active, is_available, ready_since
from controlplane.objects.podtemplate import (
    Expectations,
    Tombstones,
    create_generated,
    pod_from_template,
)
from controlplane.reconcile import Result
from controlplane.store import NotFound
from pilothouse import selectors
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)

EXPECTED = 1.0
GENERATION_LABEL = "pod-template-generation"


@dataclass(kw_only=True, eq=False)
class DaemonSetReconciler(Reconciling):
    daemonsets: Informer
    pods: Informer
    nodes: Informer
    controllerrevisions: Informer
    _expectations: Expectations = field(init=False, default_factory=Expectations)
    _tombstones: Tombstones = field(init=False, default_factory=Tombstones)

    NAME = "controller.daemonset"
    OWNER = objects_pb2.DaemonSet

    def caches(self) -> tuple[Informer, ...]:
        return (self.daemonsets, self.pods, self.nodes, self.controllerrevisions)

    def watched(self) -> tuple[Informer, ...]:
        return (self.daemonsets, self.pods, self.nodes)

    def keys_for(self, notice: Notice) -> str | list[str] | None:
        if not isinstance(notice.object, objects_pb2.Node):
            return super().keys_for(notice)
        if not _node_matters(notice):
            return None
        return [f"{d.metadata.namespace}/{d.metadata.name}" for d in self.daemonsets.list()]

    async def reconcile(self, key: str) -> Result:
        namespace, name = key.split("/", 1)
        ds = self.daemonsets.get(namespace, name)
        if ds is None:
            return Result()
        now = self.clock.now()
        terminating = ds.metadata.HasField("deletion_timestamp")
        history = revisions.owned_revisions(self.controllerrevisions.list(namespace), ds)
        current = None if terminating else await revisions.ensure(self.objects, ds, history)
        current_hash = current.metadata.labels[revisions.HASH_LABEL] if current else ""
        pods = await self._pods_of(ds)
        finished = [p for p in pods if not is_active(p) and not _terminating(p)]
        await self._delete(finished)
        active = [p for p in pods if is_active(p)]
        by_node: dict[str, list[objects_pb2.Pod]] = defaultdict(list)
        for pod in sorted(active, key=lambda p: p.metadata.creation_timestamp.seconds):
            by_node[pod.spec.node_name].append(pod)
        nodes = {n.metadata.name: n for n in self.nodes.list()}
        eligible = sorted(
            n for n, node in nodes.items() if placement.eligible(node, ds.spec.template.spec)
        )
        min_ready = ds.spec.min_ready_seconds

        def available(pod: objects_pb2.Pod) -> bool:
            return is_available(pod, min_ready_seconds=min_ready, now=now)

        def is_new(pod: objects_pb2.Pod) -> bool:
            return pod.metadata.labels.get(revisions.HASH_LABEL) == current_hash

        waiting = not self._expectations.satisfied(ds.metadata.uid, seen=self.pods.revision)
        if current is not None and not waiting:
            step = placement.plan(
                strategy=ds.spec.update_strategy,
                eligible_nodes=eligible,
                pods_by_node=by_node,
                is_new=is_new,
                is_available=available,
            )
            await self._delete(step.delete)
            await self._create(ds, current, step.create_on)
            if current is not None and ds.spec.HasField("revision_history_limit"):
                used = {p.metadata.labels.get(revisions.HASH_LABEL, "") for p in active}
                await revisions.trim(
                    self.objects,
                    [r for r in history if r.metadata.name != current.metadata.name],
                    limit=ds.spec.revision_history_limit,
                    in_use=used | {current_hash},
                )
        await self._write_status(
            ds, eligible=eligible, by_node=by_node, is_new=is_new, available=available
        )
        if waiting or (
            current is not None
            and not self._expectations.satisfied(ds.metadata.uid, seen=self.pods.revision)
        ):
            return Result(requeue_after=EXPECTED)
        if min_ready:
            waits = [
                since + min_ready - now
                for p in active
                if (since := ready_since(p)) is not None and since + min_ready > now
            ]
            if waits:
                return Result(requeue_after=min(waits))
        return Result()

    async def _pods_of(self, ds: objects_pb2.DaemonSet) -> list[objects_pb2.Pod]:
        self._tombstones.prune(self.pods.get)
        candidates = self._tombstones.alive(self.pods.list(ds.metadata.namespace))
        wanted = selectors.from_match_labels(ds.spec.selector.match_labels)
        if not ds.spec.selector.match_labels:
            return [p for p in candidates if owners.owned_by(p, ds.metadata.uid)]
        return await adoption.claim(self.objects, ds, candidates, matches=wanted.matches)

    async def _create(
        self,
        ds: objects_pb2.DaemonSet,
        revision: objects_pb2.ControllerRevision,
        nodes: list[str],
    ) -> None:
        if not nodes:
            return
        labels = {
            revisions.HASH_LABEL: revision.metadata.labels[revisions.HASH_LABEL],
            GENERATION_LABEL: str(ds.metadata.generation),
        }

        async def one(node: str) -> None:
            pod = pod_from_template(ds.spec.template, owner=ds, labels=labels)
            pod.spec.node_name = node
            await create_generated(self.objects, pod, expectations=self._expectations)

        await asyncio.gather(*(one(n) for n in nodes))
        log.info(
            "daemonset.pods_created",
            daemonset=f"{ds.metadata.namespace}/{ds.metadata.name}",
            nodes=",".join(nodes),
        )
        if self.events is not None:
            await self.events.record(
                ds,
                EventType.NORMAL,
                "SuccessfulCreate",
                f"Created pod(s) on node(s): {', '.join(nodes)}",
            )

    async def _delete(self, pods: list[objects_pb2.Pod]) -> None:
        async def one(pod: objects_pb2.Pod) -> None:
            with contextlib.suppress(NotFound):
                await self.objects.delete(Kind.POD, pod.metadata.namespace, pod.metadata.name)
            self._tombstones.bury(pod)

        await asyncio.gather(*(one(p) for p in pods))

    async def _write_status(
        self,
        ds: objects_pb2.DaemonSet,
        *,
        eligible: list[str],
        by_node: dict[str, list[objects_pb2.Pod]],
        is_new: Callable[[objects_pb2.Pod], bool],
        available: Callable[[objects_pb2.Pod], bool],
    ) -> None:
        wanted = set(eligible)
        status = objects_pb2.DaemonSetStatus()
        status.CopyFrom(ds.status)
        running = [n for n in by_node if n in wanted]
        status.desired_number_scheduled = len(eligible)
        status.current_number_scheduled = len(running)
        status.number_misscheduled = sum(1 for n in by_node if n not in wanted)
        firsts = [by_node[n][0] for n in running]
        status.number_ready = sum(1 for p in firsts if ready_since(p) is not None)
        status.number_available = sum(1 for p in firsts if available(p))
        status.number_unavailable = len(eligible) - status.number_available
        status.updated_number_scheduled = sum(
            1 for n in running if any(is_new(p) for p in by_node[n])
        )
        status.observed_generation = ds.metadata.generation
        if status == ds.status:
            return
        updated = objects_pb2.DaemonSet()
        updated.CopyFrom(ds)
        updated.status.CopyFrom(status)
        with contextlib.suppress(NotFound):
            await self.objects.update_status(updated)


def _terminating(pod: objects_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


def _node_matters(notice: Notice) -> bool:
    """A node came, went, or changed its labels or taints (not a mere heartbeat)."""
    old, new = notice.old, notice.object
    if old is None or notice.type.value != "MODIFIED":
        return True
    return old.metadata.labels != new.metadata.labels or old.spec.taints != new.spec.taints

"""Releasing the job-tracking finalizer (`tracking.FINALIZER`) from pods: once their outcome is
written in their Job's status, and from pods no Job counts any more.

`Releases` is one process's memory of the finalizers it released that the pod cache may not
show yet (per Job uid), so a pass on a cache a step behind never counts such a pod again
(Kubernetes' finalizer expectations). `release` drops the finalizer (`deletion.release`: a
pod already deleted then goes); `strays` finds the pods that still carry the finalizer but
that no Job will count: their Job is gone or was replaced by one of the same name, or they
have no controlling Job at all (an orphan delete, a manual selector that let them go).

Invariant: a uid is remembered only after its finalizer was released in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from controlplane.controllers.job.tracking import FINALIZER
from controlplane.objects import ObjectStore, deletion, owners
from controlplane.store import Conflict
from pilothouse.v1 import objects_pb2

log = structlog.get_logger(__name__)


def strays(
    pods: Iterable[objects_pb2.Pod], *, job_name: str, job_uid: str | None
) -> list[objects_pb2.Pod]:
    """The pods with the finalizer whose controller is a Job named `job_name` other than the
    one of `job_uid` (None: no such Job exists now)."""
    found = []
    for pod in pods:
        ref = owners.controller_of(pod)
        if (
            FINALIZER in pod.metadata.finalizers
            and ref is not None
            and ref.kind == "Job"
            and ref.name == job_name
            and ref.uid != job_uid
        ):
            found.append(pod)
    return found


def orphaned(pod: objects_pb2.Pod) -> bool:
    """The pod carries the finalizer but no Job controls it."""
    ref = owners.controller_of(pod)
    return FINALIZER in pod.metadata.finalizers and (ref is None or ref.kind != "Job")


class Releases:
    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects
        self._released: dict[str, set[str]] = {}

    def pending(self, job_uid: str, pods: Iterable[objects_pb2.Pod]) -> set[str]:
        """The uids of `pods` (as the cache shows them) whose finalizer this process released
        though they still show it; the others are forgotten (the cache caught up)."""
        released = self._released.get(job_uid)
        if not released:
            return set()
        released &= {p.metadata.uid for p in pods if FINALIZER in p.metadata.finalizers}
        if not released:
            del self._released[job_uid]
        return set(released)

    def forget(self, job_uid: str) -> None:
        self._released.pop(job_uid, None)

    async def release(self, job_uid: str, pods: Iterable[objects_pb2.Pod]) -> set[str]:
        """Release the finalizer of each of `pods`; the uids whose finalizer is gone now."""

        async def one(pod: objects_pb2.Pod) -> str | None:
            try:
                await deletion.release(self._objects, pod, FINALIZER)
            except Conflict:  # it kept changing: the next pass tries again
                return None
            return pod.metadata.uid

        done = {uid for uid in await asyncio.gather(*(one(p) for p in pods)) if uid}
        if done and job_uid:
            self._released.setdefault(job_uid, set()).update(done)
        return done

"""Counting a Job's finished pods with a finalizer on each, as Kubernetes' Job controller does
(job tracking with finalizers), so a finished pod deleted by anyone is still counted once
(pure).

Vocabulary:
- *tracked*: a pod of the Job that carries `FINALIZER` (the controller puts it on every pod
  it makes or adopts) and whose finalizer the controller has not already released (the
  `released` uids: a cache a step behind may still show it);
- *finished*, for counting: Succeeded; Failed; being deleted without having succeeded (its
  containers were stopped before they could succeed); once the Job has failed, anything
  not Succeeded;
- *uncounted*: `status.uncountedTerminatedPods`, the uids of finished pods recorded before
  their finalizer is released.

A finished pod is counted in three steps, each of which may be repeated after a crash
between any two of them:
1. its uid is added to uncounted (Indexed Jobs: its index to completedIndexes), and the
   status is written;
2. its finalizer is released (the pod may go then);
3. a uid in uncounted whose pod is no longer tracked (finalizer released, or the pod gone)
   leaves uncounted for `succeeded` or `failed` (`settle`).
Invariants: a uid is never in both uncounted lists nor counted twice; `succeeded` and
`failed` never decrease; a pod keeps its finalizer until its outcome is written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from controlplane.controllers.job.indexes import format_ranges, index_of, parse_ranges
from pilothouse.v1 import objects_pb2

FINALIZER = "batch.kubernetes.io/job-tracking"


def tracked(pod: objects_pb2.Pod, *, released: Collection[str] = ()) -> bool:
    return FINALIZER in pod.metadata.finalizers and pod.metadata.uid not in released


@dataclass(frozen=True, slots=True)
class Tally:
    """The status with step 1 done (and step 3 for what was released before), the pods whose
    finalizer may be released once that status is written, and the totals they make."""

    status: objects_pb2.JobStatus
    release: tuple[objects_pb2.Pod, ...]
    succeeded: int  # counted + uncounted (Indexed: completed indexes below `completions`)
    failed: int  # counted + uncounted


def settle(status: objects_pb2.JobStatus, *, still_tracked: Collection[str]) -> None:
    """Step 3: uncounted uids whose pod is no longer tracked go to their counters."""
    uncounted = status.uncounted_terminated_pods
    gone_succeeded = [uid for uid in uncounted.succeeded if uid not in still_tracked]
    gone_failed = [uid for uid in uncounted.failed if uid not in still_tracked]
    status.succeeded += len(gone_succeeded)
    status.failed += len(gone_failed)
    for kept, gone in ((uncounted.succeeded, gone_succeeded), (uncounted.failed, gone_failed)):
        if gone:
            left = [uid for uid in kept if uid in still_tracked]
            del kept[:]
            kept.extend(left)


def tally(
    status: objects_pb2.JobStatus,
    pods: Iterable[objects_pb2.Pod],
    *,
    released: Collection[str],
    failing: bool,
    completions: int | None,
    indexed: bool,
) -> Tally:
    """Step 1 (and step 3 for pods released before) over the Job's pods; see the module."""
    pods = list(pods)
    new = objects_pb2.JobStatus()
    new.CopyFrom(status)
    uncounted = new.uncounted_terminated_pods
    mine = {p.metadata.uid for p in pods if tracked(p, released=released)}
    settle(new, still_tracked=mine)
    done = parse_ranges(new.completed_indexes) if indexed and new.completed_indexes else set()
    release: list[objects_pb2.Pod] = []
    for pod in pods:
        uid = pod.metadata.uid
        if uid not in mine:
            continue
        succeeded = pod.status.phase == "Succeeded" and uid not in uncounted.failed
        if succeeded:
            index = index_of(pod)
            if indexed and index is not None and index < (completions or 0):
                done.add(index)
            elif not indexed and uid not in uncounted.succeeded:
                uncounted.succeeded.append(uid)
        elif pod.status.phase == "Failed" or pod.metadata.HasField("deletion_timestamp") or failing:
            if uid not in uncounted.failed:
                uncounted.failed.append(uid)
        else:
            continue  # still running: it keeps its finalizer
        release.append(pod)
    if indexed:
        new.completed_indexes = format_ranges(done)
        new.succeeded = len(done & set(range(completions or 0)))
        total = new.succeeded
    else:
        total = new.succeeded + len(uncounted.succeeded)
    return Tally(
        status=new,
        release=tuple(release),
        succeeded=total,
        failed=new.failed + len(uncounted.failed),
    )

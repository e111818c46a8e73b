"""Expectations: pods this process created that the pod informer may not show yet.

Pods get random names (`generateName`, as Kubernetes' ReplicaSet controller makes them), so a
replacement is visibly a new pod. What keeps creation exact is controller-runtime's and the
ReplicaSet controller's model: after creating pods for a ReplicaSet, the controller expects to
observe them, and does not create or delete pods of that ReplicaSet again until it has.

Here an expectation is a store revision: the highest revision at which this process created a
pod of the ReplicaSet. The pod informer applies events in revision order, so once its revision
has reached that one, every pod created up to it is in the cache, or was deleted since (a pod
created and deleted before the informer looked counts as observed too, so nothing waits for a
pod that will never show up, and nothing needs Kubernetes' five-minute expiry).

Invariants: an expectation only ever lowers what a pass may do (it never creates); a process
that restarts has none and its informers start from a list, so a `kill -9` mid-creation is
followed by a pass that sees every pod that was created, and makes exactly the missing ones.
"""

from __future__ import annotations


class Expectations:
    """ReplicaSet uid -> the store revision its pending creates wait for (see the module)."""

    def __init__(self) -> None:
        self._revisions: dict[str, int] = {}

    def created(self, replicaset_uid: str, revision: int) -> None:
        """A pod of that ReplicaSet was created at `revision`."""
        if revision > self._revisions.get(replicaset_uid, 0):
            self._revisions[replicaset_uid] = revision

    def satisfied(self, replicaset_uid: str, *, seen: int) -> bool:
        """Has the informer (at revision `seen`) observed every pod created here for it?"""
        waiting = self._revisions.get(replicaset_uid)
        if waiting is None:
            return True
        if seen >= waiting:
            del self._revisions[replicaset_uid]
            return True
        return False

    def forget(self, replicaset_uid: str) -> None:
        self._revisions.pop(replicaset_uid, None)

    def __len__(self) -> int:
        return len(self._revisions)

"""The ReplicaSet controller, for ReplicaSets that no Deployment controls and for the legacy
ReplicationControllers: each keeps `spec.replicas` pods of its template running.

Modules: `controller` (the reconciler: adopt and release pods by selector, create and delete
to match the count, status; one per kind, `Kind.REPLICASET` or `Kind.REPLICATIONCONTROLLER`,
run by its `.controller()`), `workload` (what differs between the two kinds: the selector's
shape and where its parts live).
A ReplicaSet with a controlling owner (a Deployment's revision) is left to its owner.
"""

from controlplane.controllers.replicaset.controller import ReplicaSetReconciler

__all__ = ["ReplicaSetReconciler"]

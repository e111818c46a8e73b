"""The StatefulSet controller: apps/v1 StatefulSets run pods with stable names and volumes.

Modules: `controller` (the reconciler; `.controller()` runs it), `ordinals` (pure: the next
step for the set's ordinals: make, delete, roll), `claims` (a pod's PersistentVolumeClaims
from the claim templates, and their retention).
"""

from controlplane.controllers.statefulset.controller import StatefulSetReconciler, ordinal_of

__all__ = ["StatefulSetReconciler", "ordinal_of"]

"""The storage controller: PersistentVolumeClaims bound to PersistentVolumes, the built-in
local-path provisioner, and volumes reclaimed when their claims go.

Modules: `controller` (the reconciler of claims and volumes, and `storage_controller`),
`localpath` (pure: the built-in class, the volume made for a claim on a node, the helper pod
that empties a deleted volume).
"""

from controlplane.controllers.storage.controller import StorageReconciler, storage_controller

__all__ = ["StorageReconciler", "storage_controller"]

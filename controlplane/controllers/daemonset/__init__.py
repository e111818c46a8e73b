"""The DaemonSet controller: apps/v1 DaemonSets run one pod on every eligible node.

Modules: `controller` (the reconciler; `.controller()` runs it), `placement` (pure: which
nodes are eligible, and the next step of a RollingUpdate or OnDelete update).
"""

from controlplane.controllers.daemonset.controller import DaemonSetReconciler

__all__ = ["DaemonSetReconciler"]

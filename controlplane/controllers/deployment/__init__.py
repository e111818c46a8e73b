"""The deployment controller: each Deployment runs `spec.replicas` pods of its current template,
reached by its strategy, with its revisions kept as ReplicaSets.

Modules, in the order a pass uses them:
- `controller`: the reconciler (which Deployment a change concerns; the pass as named steps)
  and `deployment_controller`, which wires it to the engine and the informers;
- `revisions` (names and identities), `history` (which revision is current, kept, a rollback
  target), `revision_writes` (create, renumber, follow, resize a revision);
- `rollout` (pure planning: each revision's next target by strategy or proportional scaling);
- `replicaset` (a ReplicaSet's pods made to match its target; its status);
- `status` (counts and the Available condition), `progress` (Progressing and the deadline),
  `completion` (the Deployment's status written; what a finished or failed rollout means),
  `rollback` (back to the last fully available revision);
- `writes` (the controller's own writes kept, so a stale cache never misleads a pass).
A Deployment's ReplicaSets are run here, not by `controllers.replicaset` (which runs only the
ReplicaSets no Deployment owns): one pass sees the whole Deployment.
"""

from controlplane.controllers.deployment.controller import (
    DeploymentReconciler,
    deployment_controller,
)
from controlplane.controllers.deployment.revision_writes import ForeignReplicaSet
from controlplane.controllers.deployment.writes import Reason

__all__ = ["DeploymentReconciler", "ForeignReplicaSet", "Reason", "deployment_controller"]

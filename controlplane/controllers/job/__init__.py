"""The Job controller: batch/v1 Jobs run pods to completion.

Modules: `controller` (the reconciler: pods, finishing, TTL, status; `job_controller` wires it),
`status` (the Job's conditions and counts),
`progress` (pure: what the pods amount to and the next step: create, stop, finish, back off),
`indexes` (Indexed Jobs: completion indexes and their "0-2,5" form).
"""

from controlplane.controllers.job.controller import JobReconciler, job_controller
from controlplane.controllers.job.status import finished

__all__ = ["JobReconciler", "finished", "job_controller"]

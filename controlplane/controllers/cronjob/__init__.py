"""The CronJob controller: batch/v1 CronJobs start Jobs on their schedule.

Modules: `controller` (the reconciler; `.controller()` runs it), `jobs` (the Jobs a CronJob
owns: which are active, which finished, which history to keep, and the Job made for one
scheduled time).
"""

from controlplane.controllers.cronjob.controller import CronJobReconciler

__all__ = ["CronJobReconciler"]

"""The scheduler: which node should run each unscheduled pod.

Vocabulary (used in every module here):
- snapshot: an immutable picture of nodes and the pods bound to them (`snapshot.Snapshot`),
  handed out by the cluster view (`cluster.ClusterView`), which informer notices keep current.
- filter: a node-level yes/no with a reason (`filters`); score: a 0..100 preference (`scores`).
- placement / unschedulable: the two answers of `schedule.schedule(snapshot, pod)`.
- bind: the compare-and-swap write of `spec.nodeName` (`runner.Scheduler`, the only part that
  touches the store).

Invariant: everything but `runner` is pure business logic over plain objects, tested without a
store; the runner assumes each placement into the cluster view (before writing it) so a burst
never overfills a node.
"""

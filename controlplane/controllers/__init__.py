"""Controllers: level-triggered loops that move stored objects towards what their specs ask.

Each one is a reconciler run by the engine in `controlplane.reconcile` (queue, workers, retries,
clock; its docstring has the vocabulary), or, for node lifecycle, a runnable of its own.

Controllers here, one per package or file, never importing each other (their shared pieces
live in `controlplane.objects`: pods from templates with expectations, adoption, revisions,
taints, deletion):
- `deployment` (Deployment -> ReplicaSet per template -> pods, status);
- `replicaset` (standalone ReplicaSets and ReplicationControllers), `job`, `cronjob`,
  `daemonset` (one pod per eligible node), `statefulset` (ordinals, claims);
- `storage` (claims bound to volumes, the built-in local-path provisioner, reclaim);
- `namespace` (implicit namespaces; a deleted one emptied before it goes);
- `garbage` (dependents of gone owners; foreground and orphan deletions), `podgc`,
  `endpointslice`, and `nodelifecycle` (a node whose heartbeats stop is marked NotReady, then
  emptied).
Invariant: level-triggered throughout: a lost notice, a crash or a restart is healed by the
next reconcile of the same key, never by replaying history. Objects made with a fixed name
(revisions, StatefulSet pods, a CronJob's Jobs) are found again by a retry; pods made with a
random name are made under expectations, so a retry never makes one twice.
"""

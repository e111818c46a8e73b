"""Controllers: level-triggered loops that move stored objects towards what their specs ask.

Each one is a reconciler run by the engine in `controlplane.reconcile` (queue, workers, retries,
clock; its docstring has the vocabulary), or, for node lifecycle, a runnable of its own.

Controllers here: `deployment` (Deployment -> ReplicaSet per template -> pods, status),
`garbage` (deletes objects whose controlling owner is gone: the Deployment delete cascade) and
`nodelifecycle` (a node whose heartbeats stop is marked NotReady, then emptied). They never
import each other.
Invariant: level-triggered throughout: a lost notice, a crash or a restart is healed by the
next reconcile of the same key, never by replaying history. Names of created objects are
deterministic so a retry finds what an interrupted pass made.
"""

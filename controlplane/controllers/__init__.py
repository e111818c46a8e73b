"""Controllers: level-triggered loops that move stored objects towards what their specs ask.

Vocabulary:
- informer (`controlplane.cache.informer.Informer`): a list+watch cache of one kind; it calls
  handlers with a `Notice` for every change. One informer per kind is shared by everyone.
- key: the name of the thing to reconcile, usually "namespace/name" of the owning object.
  Handlers map notices to keys (a Pod's change -> its Deployment's key).
- work queue (`queue.WorkQueue`): de-duplicates keys, never hands one key to two workers at
  once, re-delivers a key added while it was being processed, and delays retries per key
  (`add_after`, `add_rate_limited` with exponential backoff, `forget`).
- reconciler: an object with `async reconcile(key) -> loop.Result`. It reads the world (from
  informers), compares with the spec, acts on the difference with compare-and-swap writes, and
  returns. It never keeps state between calls that a restart would lose.
- controller (`loop.Controller`): N workers taking keys from the queue and calling the
  reconciler; the ONLY place that decides retries: success -> forget; `Result(requeue_after=s)`
  -> again in s seconds; `Terminal` error -> logged, not retried; any other error -> retried
  with the key's backoff (5 ms doubling to 30 s). A Runnable (`needs_leadership = True`).
- clock (`clock.Clock`): time comes from an injected clock so tests run on virtual time.

Controllers here: `deployment` (Deployment -> ReplicaSet per template -> pods, status) and
`garbage` (deletes objects whose controlling owner is gone: the Deployment delete cascade).
Invariant: level-triggered throughout: a lost notice, a crash or a restart is healed by the
next reconcile of the same key, never by replaying history. Names of created objects are
deterministic so a retry finds what an interrupted pass made.
"""

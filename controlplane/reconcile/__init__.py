"""The reconcile engine's contract: what a reconciler is, what it returns, what an error means.

This package is the engine only (like controller-runtime's `pkg/reconcile` beside its internal
controller); the controllers that use it live in `controlplane.controllers`, the scheduler in
`controlplane.scheduler`.

Vocabulary:
- key (controller-runtime's Request): a string naming one thing to reconcile, usually
  "namespace/name" of the owning object. Handlers map informer notices to keys (a Pod's
  change -> its Deployment's key).
- reconciler: an object with `async reconcile(key) -> Result`. It reads the world (from
  informers), compares it with the spec, acts on the difference with compare-and-swap writes,
  and returns. It never keeps state between calls that a restart would lose.
- `Result(requeue_after=s)`: look at the key again in s seconds (None: only when it changes).
- `Terminal`: an error retrying cannot fix; anything else raised is retried with backoff.
- work queue (`queue.WorkQueue`): de-duplicates keys, never hands one key to two workers at
  once, re-delivers a key added while it was being processed, and delays retries per key.
- controller (`controller.Controller`): N workers taking keys from the queue and calling the
  reconciler; the ONLY place that decides retries (see its module docstring).
- clock (`clock.Clock`): time comes from an injected clock so tests run on virtual time.

Invariant: level-triggered throughout: a lost notice, a crash or a restart is healed by the
next reconcile of the same key, never by replaying history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Reconciler", "Result", "Terminal"]


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile pass asks for next: nothing, or another look after `requeue_after` s."""

    requeue_after: float | None = None


class Terminal(Exception):
    """An error retrying cannot fix (an invalid object): log it and wait for a change."""


class Reconciler(Protocol):
    async def reconcile(self, key: str) -> Result: ...

"""Leadership: which control-plane member runs the controllers, and proof that it still does.

Every member serves the API; one member, the *leader*, runs the parts that act on the cluster
(controllers, scheduler, node lifecycle, node sync). The election is etcd's own recipe
(`client/v3/concurrency/election.go`), built from a lease, transactions and a watch:

Vocabulary:
- *session*: a lease of `ttl` seconds (default 2, etcd's minimum with its default election
  timeout) kept alive every ttl/3 by its member, and the member's *campaign key*
  `<prefix><lease id>` created with it (`Txn(If CreateRevision == 0, Then Put)`), whose value
  is the member's `Candidate` record (name, API address, etcd endpoint).
- *leader*: the member whose campaign key has the lowest create revision. The others wait,
  each for the deletion of the key just below its own (a queue with no thundering herd).
- *term*: one member's time as leader. Its *fence* is its campaign key and that key's create
  revision: every leader-only write goes through `store.fenced(fence)`, so it commits only
  while the key still exists with that revision (`controlplane.store.Fenced` otherwise).

Invariants:
- A member steps down (its term's `lost` is set) before its lease can have expired on the
  etcd side: the deadline is the send time of the last acknowledged keep-alive plus the TTL
  etcd granted, and it gives up `margin` seconds before that.
- A member paused past its lease (SIGSTOP) wakes with a term that is no longer `valid()` and
  a fence that no longer holds: whatever its leader-only parts try before they are cancelled
  is refused by etcd (`Fenced`, counted in `Election.fenced_writes`), and nothing is written.
- A clean stop stops the leader's parts first, then revokes the lease: the next member takes
  over as soon as its watch sees the key go, not after a TTL.

Modules: `election` (sessions, campaign, terms), `keeper` (the thread that renews the lease
off the main event loop), `leadership` (the runnable that starts the
leader-only runnables for each term and stops them when it ends), `members` (the candidates'
records and the history of leader changes, for `pilothouse get controlplanes`).
"""

from controlplane.leader.election import (
    DEFAULT_PREFIX,
    DEFAULT_TTL,
    Candidate,
    Election,
    LossReason,
    Term,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TTL",
    "Candidate",
    "Election",
    "LossReason",
    "Term",
]

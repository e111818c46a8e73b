"""On-disk state of the node agent: what must survive an agent restart besides the containers.

Vocabulary:
- desired set: the pods last pushed with SyncPods, persisted so that a restarted agent knows
  what it was asked to run before the control plane speaks again.
- observed state is NOT kept here: it lives with the containers (runtime labels, monitor exit
  files) and is re-read on start (re-adoption).

Invariants: every file is replaced atomically (write to a temporary file in the same directory,
fsync, rename), so a crash leaves either the old or the new content, never a torn file. A file
that is unreadable all the same (a disk fault, a hand edit) is quarantined (`quarantine`): moved
aside with one log line, and the agent starts without it.
"""

from nodeagent.state.desired import DesiredPods, write_atomically
from nodeagent.state.quarantine import quarantine

__all__ = ["DesiredPods", "quarantine", "write_atomically"]

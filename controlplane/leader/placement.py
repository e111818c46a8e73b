"""Raft placement: the control-plane leader keeps etcd's raft leader off its own etcd member.

Why: a control-plane member and its embedded etcd member share a host, so one crash can take
both. If that host holds the control-plane leader AND the etcd raft leader, the survivors
first elect a raft leader (about one election timeout, 1 s), and etcd's new raft leader
extends every lease by its election timeout on top of the full TTL (etcd's lessor Promote),
so the dead leader's lease lasts about 1 s + 1 s + TTL instead of TTL: 4-5 s instead of about
2. Keeping the two leaderships on different members bounds a leader crash by the lease TTL,
and a crash of the raft leader's host then costs an etcd election but no leader change.

`RaftPlacement` runs while this member leads (it declares `needs_leadership`): every
`interval` seconds it asks etcd whether this member's etcd is the raft leader and, if so,
moves raft leadership to a healthy other member (etcd's MoveLeader). Store errors are logged
and retried at the next interval; with one etcd member there is nothing to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from controlplane.store import StoreError

log = structlog.get_logger(__name__)

INTERVAL = 2.0


class RaftPlacement:
    name = "leader.raft_placement"
    needs_leadership = True

    def __init__(
        self, move: Callable[[], Awaitable[str | None]], *, interval: float = INTERVAL
    ) -> None:
        self._move = move
        self._interval = interval

    async def run(self) -> None:
        while True:
            try:
                moved = await self._move()
            except StoreError as error:
                log.debug("leader.raft_placement_failed", error=str(error))
            else:
                if moved:
                    log.info("leader.raft_leader_moved", to=moved)
            await asyncio.sleep(self._interval)

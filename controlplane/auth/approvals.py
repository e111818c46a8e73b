"""Approvals: an admin's word that the next join for a node name may take over that name.

Vocabulary: an approval is `/pilothouse/node-approvals/<node>` with its expiry (epoch seconds),
made by `pilothouse node approve NAME` (default: valid for an hour). A join with a valid token
for a node that exists and is alive, or that was revoked, needs one (or a token created with
`--for-node NAME`, which is the same word said in advance).

Invariants: an approval is spent by the one join that uses it (`take` deletes it with a
compare-and-swap, so two joins cannot share it); an expired approval is no approval; time comes
from the injected `now`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controlplane.store import AlreadyExists, Conflict, NotFound, Store
from pilothouse import pki

log = structlog.get_logger(__name__)

PREFIX = "/pilothouse/node-approvals/"
DEFAULT_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class Approval:
    node: str
    expires: float


class Approvals:
    def __init__(self, store: Store, *, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._now = now

    async def approve(self, node: str, *, ttl: float = DEFAULT_TTL) -> Approval:
        """Let the next join for `node` (within `ttl` seconds) take the name over."""
        pki.check_node_name(node)
        if ttl <= 0:
            raise ValueError(f"an approval's time to live must be positive, not {ttl:g} s")
        approval = Approval(node=node, expires=self._now() + ttl)
        value = json.dumps({"node": node, "expires": approval.expires}).encode()
        while True:
            try:
                entry = await self._store.get(PREFIX + node)
            except NotFound:
                try:
                    await self._store.create(PREFIX + node, value)
                except AlreadyExists:
                    continue
                break
            try:
                await self._store.update(PREFIX + node, value, expected_revision=entry.revision)
            except (Conflict, NotFound):
                continue
            break
        log.info("node.approved", node=node, expires=approval.expires)
        return approval

    async def valid(self, node: str) -> bool:
        """Whether a valid approval for `node` exists (without spending it)."""
        try:
            entry = await self._store.get(PREFIX + node)
        except NotFound:
            return False
        return self._now() < float(json.loads(entry.value).get("expires", 0))

    async def take(self, node: str) -> bool:
        """Spend the approval for `node`: True if there was a valid one (now gone)."""
        try:
            entry = await self._store.get(PREFIX + node)
        except NotFound:
            return False
        expires = float(json.loads(entry.value).get("expires", 0))
        try:
            await self._store.delete(PREFIX + node, expected_revision=entry.revision)
        except (Conflict, NotFound):
            return False  # another join took it first
        if self._now() >= expires:
            return False
        log.info("node.approval_used", node=node)
        return True

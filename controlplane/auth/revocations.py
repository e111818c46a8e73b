"""Revocations: the deny list of node certificates, kept in etcd and checked on every call.

Vocabulary:
- revocation: `/pilothouse/node-revocations/<node>` holds when the node was cut off (`at`,
  epoch seconds), why (`Reason`: an admin's `pilothouse node revoke`, or the Node's deletion)
  and whether the node has joined again since (`rejoined`).
- covered certificate: a certificate of that node issued up to `at` (`pki.issued_at`, to the
  second). Covered certificates are refused on every call; a certificate issued after the
  revocation (a join an admin approved; the signer waits out the second of the revocation,
  `wait_past`) is not covered.

Invariants:
- Every call checks the deny list in memory (`refused`), never the store: the list is read at
  start (`load`) and kept by a watch (`run`); `revoke` updates memory before it returns, so the
  next call of that node on this control plane is refused, and the watch carries it to others.
- A call that stays open (a node's Heartbeats stream) is cut when its certificate becomes
  covered: `until_refused` returns on the change of memory that covers it.
- A revocation only moves forward: revoking again keeps the later time. Entries go once every
  certificate they cover has expired (`PRUNE_AFTER`, the node certificates' lifetime).
- Nothing here decides who may revoke (admins, by the authorizer) or rejoin (the Join servicer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controlplane.store import (
    AlreadyExists,
    Compacted,
    Conflict,
    EventType,
    NotFound,
    Store,
    StoreError,
)
from pilothouse import pki

log = structlog.get_logger(__name__)

PREFIX = "/pilothouse/node-revocations/"
PRUNE_AFTER = pki.NODE_VALIDITY.total_seconds() + 3600.0
_RETRY_SECONDS = 1.0


class Reason(enum.Enum):
    REVOKED = "revoked"  # `pilothouse node revoke`
    DELETED = "deleted"  # the Node was deleted


@dataclass(frozen=True, slots=True)
class Revocation:
    node: str
    at: float
    reason: Reason
    rejoined: bool = False

    def covers(self, issued_at: float) -> bool:
        """Whether a certificate issued at `issued_at` (whole seconds) predates the revocation."""
        return issued_at <= self.at

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        how = "revoked" if self.reason is Reason.REVOKED else "cut off when its Node was deleted"
        return (
            f'the certificate of node "{self.node}" was {how} at {when}; the node joins again '
            "with a new token (remove its <state-dir>/pki/ and start the agent with "
            f"--token-file), after `pilothouse node approve {self.node}` if it was revoked"
        )


class Revocations:
    """The deny list, in memory and in the store (see the module docstring)."""

    name = "revocations"

    def __init__(self, store: Store, *, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._now = now
        self._entries: dict[str, Revocation] = {}
        self._revision: int | None = None
        self._changed = asyncio.Event()  # set, and replaced, on every change of `_entries`

    # -- reading (in memory) -----------------------------------------------------------

    def get(self, node: str) -> Revocation | None:
        return self._entries.get(node)

    def refused(self, node: str, *, issued_at: float) -> Revocation | None:
        """The revocation that covers a certificate of `node` issued at `issued_at`."""
        entry = self._entries.get(node)
        return entry if entry is not None and entry.covers(issued_at) else None

    def cut_off(self, node: str) -> str | None:
        """Why the control plane must not talk to `node`'s agent (it holds no certificate that
        is not covered), or None."""
        entry = self._entries.get(node)
        return entry.describe() if entry is not None and not entry.rejoined else None

    async def until_refused(self, node: str, *, issued_at: float) -> Revocation:
        """Return the revocation that covers a certificate of `node` issued at `issued_at`,
        once there is one (at once if there is one now)."""
        while (entry := self.refused(node, issued_at=issued_at)) is None:
            await self._changed.wait()
        return entry

    def _set(self, node: str, entry: Revocation | None) -> None:
        if entry is None:
            self._entries.pop(node, None)
        else:
            self._entries[node] = entry
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_past(self, node: str) -> None:
        """Return once a certificate of `node` issued now is not covered (certificates carry
        whole seconds: at most a second after a revocation)."""
        entry = self._entries.get(node)
        if entry is not None:
            # Covered while the whole second now is <= at, i.e. until the second after it.
            delay = int(entry.at) + 1.0 - self._now()
            if delay > 0:
                await asyncio.sleep(delay + 0.01)

    # -- writing -----------------------------------------------------------------------

    async def revoke(self, node: str, *, reason: Reason) -> Revocation:
        """Cut `node` off: every certificate of it issued until now is refused from now on."""
        pki.check_node_name(node)
        # Memory first: this control plane refuses the node's next call even while the write
        # below is still on its way.
        earlier = self._entries.get(node)
        self._set(
            node,
            Revocation(
                node=node, at=max(self._now(), earlier.at if earlier else 0.0), reason=reason
            ),
        )
        while True:
            now = self._now()
            try:
                entry = await self._store.get(PREFIX + node)
            except NotFound:
                revocation = Revocation(node=node, at=now, reason=reason)
                try:
                    await self._store.create(PREFIX + node, _encode(revocation))
                except AlreadyExists:
                    continue
                break
            current = _decode(entry.value)
            revocation = Revocation(node=node, at=max(now, current.at), reason=reason)
            try:
                await self._store.update(
                    PREFIX + node, _encode(revocation), expected_revision=entry.revision
                )
            except (Conflict, NotFound):
                continue
            break
        self._set(node, revocation)
        log.warning("node.revoked", node=node, reason=reason.value, at=revocation.at)
        return revocation

    async def rejoined(self, node: str) -> None:
        """`node` holds a certificate issued after its revocation: the control plane may talk
        to its agent again (its older certificates stay refused)."""
        while True:
            try:
                entry = await self._store.get(PREFIX + node)
            except NotFound:
                self._set(node, None)
                return
            current = _decode(entry.value)
            if current.rejoined:
                self._set(node, current)
                return
            updated = dataclasses.replace(current, rejoined=True)
            try:
                await self._store.update(
                    PREFIX + node, _encode(updated), expected_revision=entry.revision
                )
            except (Conflict, NotFound):
                continue
            self._set(node, updated)
            log.info("node.rejoined", node=node, revoked_at=current.at)
            return

    # -- keeping the memory in step ----------------------------------------------------

    async def load(self) -> None:
        """Read the whole list (and prune what no live certificate can be covered by)."""
        listing = await self._store.list(PREFIX)
        entries: dict[str, Revocation] = {}
        now = self._now()
        for item in listing.entries:
            revocation = _decode(item.value)
            if now - revocation.at > PRUNE_AFTER:
                with contextlib.suppress(Conflict, NotFound):
                    await self._store.delete(item.key, expected_revision=item.revision)
                continue
            entries[revocation.node] = revocation
        self._entries = entries
        self._revision = listing.revision
        self._wake()

    async def run(self) -> None:
        """Keep the memory in step with the store until cancelled."""
        while True:
            try:
                if self._revision is None:
                    await self.load()
                assert self._revision is not None
                async for change in self._store.watch(PREFIX, since=self._revision):
                    node = change.key.removeprefix(PREFIX)
                    self._set(
                        node, None if change.type is EventType.DELETE else _decode(change.value)
                    )
                    self._revision = change.revision
            except Compacted:
                self._revision = None
            except StoreError as error:
                log.warning("revocations.watch_failed", error=str(error), retry_in=_RETRY_SECONDS)
                self._revision = None
                await asyncio.sleep(_RETRY_SECONDS)


def _encode(revocation: Revocation) -> bytes:
    return json.dumps(
        {
            "node": revocation.node,
            "at": revocation.at,
            "reason": revocation.reason.value,
            "rejoined": revocation.rejoined,
        },
        sort_keys=True,
    ).encode()


def _decode(value: bytes) -> Revocation:
    data = json.loads(value)
    return Revocation(
        node=str(data["node"]),
        at=float(data["at"]),
        reason=Reason(data.get("reason", Reason.REVOKED.value)),
        rejoined=bool(data.get("rejoined", False)),
    )

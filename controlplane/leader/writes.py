"""The leader's writes, counted: what a term's fenced store committed, and what etcd refused.

`CountedFencedStore` wraps a term's fenced store (`Store.fenced`) for the leader-only parts.
It counts every write in the member's `WriteCounts`, logs each refusal (`leader.write_fenced`),
and counts apart the writes *started* when the term was no longer valid (its lease could have
expired): how many etcd committed (always 0: etcd checks the fence in the same transaction),
refused, or that never got an answer (cancelled with their part). `leader.stepped_down` logs
them, which is how a test shows that a deposed leader wrote nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controlplane.store import Fenced, Store

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class WriteCounts:
    """Leader-only writes of one member, as its fenced stores saw them."""

    committed: int = 0
    refused: int = 0  # etcd answered Fenced
    stale: int = 0  # started when the term was no longer valid()
    stale_committed: int = 0  # of those, committed: always 0 (etcd checks the fence)
    stale_refused: int = 0  # of those, refused by etcd (Fenced)
    stale_unfinished: int = 0  # of those, cancelled or failed before etcd answered


class CountedFencedStore:
    """A fenced store view that counts its writes in `WriteCounts` and logs refusals."""

    def __init__(
        self, fenced: Store, *, valid: Callable[[], bool], term: int, counts: WriteCounts
    ) -> None:
        self._fenced = fenced
        self._valid = valid
        self._term = term
        self._counts = counts

    def __getattr__(self, name: str) -> object:
        return getattr(self._fenced, name)

    async def _write(self, operation: str, key: str, call: Callable[[], object]) -> object:
        stale = not self._valid()
        if stale:
            self._counts.stale += 1
        try:
            result = await call()  # type: ignore[misc]
        except Fenced:
            self._counts.refused += 1
            self._counts.stale_refused += stale
            log.warning(
                "leader.write_fenced",
                operation=operation,
                key=key,
                term=self._term,
                refused=self._counts.refused,
            )
            raise
        except BaseException:
            self._counts.stale_unfinished += stale
            raise
        self._counts.committed += 1
        if stale:
            self._counts.stale_committed += 1
        return result

    async def create(self, key: str, value: bytes, *, lease: int = 0):  # type: ignore[no-untyped-def]
        return await self._write(
            "create", key, lambda: self._fenced.create(key, value, lease=lease)
        )

    async def update(self, key: str, value: bytes, *, expected_revision: int):  # type: ignore[no-untyped-def]
        return await self._write(
            "update",
            key,
            lambda: self._fenced.update(key, value, expected_revision=expected_revision),
        )

    async def delete(self, key: str, *, expected_revision: int | None = None):  # type: ignore[no-untyped-def]
        return await self._write(
            "delete", key, lambda: self._fenced.delete(key, expected_revision=expected_revision)
        )

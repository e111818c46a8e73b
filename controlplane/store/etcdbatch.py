"""Write batching: concurrent compare-and-swap writes to etcd coalesced into one transaction.

Why: under load (many agents reporting pod status, many clients applying) each write is one
etcd round trip and one gRPC call's worth of CPU here; writes that arrive while a transaction
is in flight are instead sent together as the next one, so a burst of N writes costs a few
transactions, and a lone write waits for nothing.

Invariants:
- Each write keeps its own semantics: `create` fails with `AlreadyExists` when the key
  exists, `update` with `NotFound`/`Conflict` unless the key is at the expected revision, a
  fenced write with `Fenced` when its fence no longer holds. A batch is one transaction whose
  compares are all of its writes' compares: it commits all or nothing. When it fails, its
  failure branch reads every key (and the fence), each write whose own compare failed gets
  its own error, and the others are sent again in the next batch.
- Per key, writes commit in the order they were made: a batch holds at most one write of a
  key (etcd refuses a key twice in one transaction); later ones wait for the next batch.
- A batch holds writes of one fence only, at most `MAX_OPS` compares and operations per branch
  (etcd refuses a transaction whose compares, success or failure ops exceed its --max-txn-ops,
  default 128; an update costs two compares, a create one, the fence one) and about `MAX_BYTES`
  of values (its request limit is 1.5 MiB); one larger write goes alone. All writes of a batch
  share its revision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aetcd import rpc

from controlplane.store import AlreadyExists, Conflict, Entry, Fence, NotFound, etcdrpc

MAX_OPS = 120  # below etcd's default --max-txn-ops (128)
MAX_BYTES = 512 * 1024

Send = Callable[[rpc.TxnRequest], Awaitable[rpc.TxnResponse]]


@dataclass(slots=True)
class _Write:
    key: str
    full: bytes
    value: bytes
    expected: int | None  # None: a create (the key must not exist)
    lease: int
    fence: Fence | None
    done: asyncio.Future[Entry] = field(default_factory=lambda: _loop().create_future())


class WriteBatcher:
    """Coalesces `create`s and `update`s sent through `send` (EtcdStore's Txn call)."""

    def __init__(self, send: Send, *, root: str) -> None:
        self._send = send
        self._root = root
        self._queue: list[_Write] = []
        self._sending = False

    async def write(
        self,
        key: str,
        full: bytes,
        value: bytes,
        *,
        expected: int | None,
        lease: int = 0,
        fence: Fence | None = None,
    ) -> Entry:
        """Create (`expected` None) or update `key` as one write of some batch."""
        write = _Write(key, full, value, expected, lease, fence)
        self._queue.append(write)
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._drain())
        try:
            return await asyncio.shield(write.done)
        except asyncio.CancelledError:
            if write in self._queue:
                self._queue.remove(write)  # not sent yet: it never happens
            raise

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    retry = await self._commit(batch)
                except Exception as error:  # the transaction itself failed: every write did
                    for write in batch:
                        _settle(write, error=error)
                    continue
                self._queue[:0] = retry
        finally:
            self._sending = False

    def _take(self) -> list[_Write]:
        """The next batch: the oldest writes of the first write's fence, one per key."""
        fence = self._queue[0].fence
        batch: list[_Write] = []
        keys: set[bytes] = set()
        size = 0
        compares = 0 if fence is None else 1
        rest: list[_Write] = []
        for write in self._queue:
            cost = _compares(write)
            fits = compares + cost <= MAX_OPS and (
                not batch or size + len(write.value) <= MAX_BYTES
            )
            if fits and write.fence == fence and write.full not in keys:
                batch.append(write)
                size += len(write.value)
                compares += cost
            else:
                rest.append(write)
            keys.add(write.full)  # a later write of the key waits for this one
        self._queue = rest
        return batch

    async def _commit(self, batch: list[_Write]) -> list[_Write]:
        """Send `batch` as one transaction; returns the writes to send again."""
        fence = batch[0].fence
        compares: list[rpc.Compare] = []
        for write in batch:
            if write.expected is not None:
                compares.extend(etcdrpc.expect(write.full, write.expected))
            else:
                compares.append(
                    rpc.Compare(
                        key=write.full,
                        target=rpc.Compare.CREATE,
                        result=rpc.Compare.EQUAL,
                        create_revision=0,
                    )
                )
        compares.extend(etcdrpc.fence_compares(fence, root=self._root))
        request = rpc.TxnRequest(
            compare=compares,
            success=[
                rpc.RequestOp(
                    request_put=rpc.PutRequest(
                        key=w.full, value=w.value, lease=w.lease, prev_kv=w.expected is not None
                    )
                )
                for w in batch
            ],
            failure=[
                *(rpc.RequestOp(request_range=rpc.RangeRequest(key=w.full)) for w in batch),
                *etcdrpc.fence_reads(fence, root=self._root),
            ],
        )
        response = await self._send(request)
        revision = response.header.revision
        if response.succeeded:
            for write, answer in zip(batch, response.responses, strict=True):
                update = write.expected is not None
                created = answer.response_put.prev_kv.create_revision if update else 0
                entry = Entry(write.key, write.value, revision, created or revision)
                _settle(write, entry=entry)
            return []
        try:
            etcdrpc.check_fence(response, fence, first=len(batch))
        except Exception as error:
            for write in batch:
                _settle(write, error=error)
            return []
        retry = []
        for write, answer in zip(batch, response.responses, strict=False):
            found = answer.response_range.kvs
            error = _refusal(write, found[0] if found else None)
            if error is None:
                retry.append(write)  # its own compare held: another write failed the batch
            else:
                _settle(write, error=error)
        return retry


def _compares(write: _Write) -> int:
    """How many compares `write` adds to its transaction (`_commit` builds them)."""
    return 1 if write.expected is None else etcdrpc.EXPECT_COMPARES


def _refusal(write: _Write, found: rpc.KeyValue | None) -> Exception | None:
    """Why `write`'s own compare fails against `found` (None: it holds)."""
    if write.expected is None:
        return AlreadyExists(f"{write.key} already exists") if found is not None else None
    if found is None:
        return NotFound(f"{write.key} not found")
    if found.mod_revision != write.expected:
        return Conflict(
            f"{write.key} is at revision {found.mod_revision}, not {write.expected}: "
            "it was changed by someone else; read it again and retry"
        )
    return None


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _settle(write: _Write, *, entry: Entry | None = None, error: Exception | None = None) -> None:
    if write.done.done():
        return
    if error is not None:
        write.done.set_exception(error)
        write.done.exception()  # retrieved: a writer that left raises no warning
    else:
        write.done.set_result(entry)  # type: ignore[arg-type]

"""EtcdStore: the Store over an etcd v3 cluster, through aetcd's generated stubs.

Invariants:
- Every write is guarded by a compare in an etcd transaction: `create` on create_revision ==
  0, `update` and `delete` on mod_revision == expected (and the key existing), so a lost race
  is a `Conflict`, never a silent overwrite. Concurrent creates and updates share
  transactions (`etcdbatch`), each keeping its own outcome.
- Keys are stored under `root` (e.g. "/pilothouse"); callers never see the root.
- Connection failures surface as `Unavailable` naming the endpoints; the same EtcdStore works
  again once etcd is back (gRPC channels reconnect within a second; the next call just works).
- With several endpoints, a call that could not reach one endpoint tries the next; the store
  sticks to the last endpoint that answered.
- TLS: `https://` endpoints need `credentials` (channel credentials made by the caller: the
  CA to verify etcd with and, for an etcd with `--client-cert-auth`, the control plane's
  client certificate); the server's certificate must name the endpoint's host. `http://`
  endpoints are plaintext and take no credentials; one store never mixes the two.
- Fenced writes (`fenced(fence)`) add a compare on the fence key's create revision to the same
  transaction; when the write fails, the failure branch reads both keys, so a refusal is
  `Fenced` when the fence no longer holds and the usual `Conflict`/`NotFound` otherwise.
- Leases, the members of the cluster and raft leadership: `controlplane.store.etcdcluster`;
  endpoints, channels, error classification and transaction compares: `etcdrpc`.
- A watch survives outages: it re-establishes itself with backoff from the revision after the
  last change it delivered, so nothing is lost or duplicated; if that revision was compacted
  meanwhile it raises `Compacted` and the caller lists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from aetcd import rpc
from aetcd.utils import prefix_range_end

from controlplane import metrics
from controlplane.store import (
    Change,
    Compacted,
    Entry,
    EventType,
    Fence,
    Listing,
    NotFound,
    StoreError,
    Unavailable,
    etcdrpc,
)
from controlplane.store.etcdbatch import WriteBatcher
from controlplane.store.etcdcluster import EtcdCluster
from controlplane.store.fenced import FencedView

log = structlog.get_logger(__name__)

T = TypeVar("T")
T_stub = TypeVar("T_stub")

_PAGE_SIZE = 1000


class EtcdStore(EtcdCluster):
    """A Store over etcd. `endpoints` are client URLs such as "https://127.0.0.1:2379";
    `credentials` (grpc.ChannelCredentials, opaque here) secure the https ones."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        root: str = "",
        timeout: float = 5.0,
        credentials: object | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one etcd endpoint")
        self._endpoints = [etcdrpc.Endpoint.parse(url) for url in endpoints]
        secure = {endpoint.secure for endpoint in self._endpoints}
        if len(secure) > 1:
            raise ValueError("etcd endpoints mix https:// and http://; use one scheme for all")
        if secure == {True} and credentials is None:
            raise ValueError(
                "https:// etcd endpoints need TLS credentials (the CA that signed etcd's "
                "certificate, and a client certificate when etcd asks for one)"
            )
        if secure == {False} and credentials is not None:
            raise ValueError("TLS credentials given for plaintext http:// etcd endpoints")
        self._credentials = credentials
        self._root = root.rstrip("/")
        self._timeout = timeout
        self._clients: dict[int, etcdrpc.Connection] = {}
        self._current = 0
        self._closed = False
        self._writes = WriteBatcher(self.batch, root=self._root)

    @property
    def endpoints(self) -> list[str]:
        return [endpoint.url for endpoint in self._endpoints]

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: str, *, fresh: bool = True) -> Entry:
        request = rpc.RangeRequest(key=self._full(key))
        response = await self._call(lambda kv: kv.Range(request, timeout=self._timeout))
        if not response.kvs:
            raise NotFound(f"{key} not found")
        return self._entry(response.kvs[0])

    async def current_revision(self) -> int:
        """The cluster's revision now (a linearizable read of one key, counted only)."""
        request = rpc.RangeRequest(key=b"\0", count_only=True)
        response = await self._call(lambda kv: kv.Range(request, timeout=self._timeout))
        return response.header.revision

    async def list(self, prefix: str) -> Listing:
        start, end = self._range(prefix)
        entries: list[Entry] = []
        revision = 0
        while True:
            request = rpc.RangeRequest(
                key=start, range_end=end, limit=_PAGE_SIZE, revision=revision
            )
            try:
                response = await self._call(
                    lambda kv, r=request: kv.Range(r, timeout=self._timeout)
                )
            except Compacted:
                # Auto-compaction passed the revision between two pages: read it all again.
                entries, revision, start = [], 0, self._range(prefix)[0]
                continue
            revision = revision or response.header.revision
            entries.extend(self._entry(kv) for kv in response.kvs)
            if not response.more or not response.kvs:
                return Listing(entries=entries, revision=revision)
            start = response.kvs[-1].key + b"\0"

    # -- writes --------------------------------------------------------------------------

    async def create(
        self, key: str, value: bytes, *, lease: int = 0, fence: Fence | None = None
    ) -> Entry:
        full = self._full(key)
        return await self._writes.write(key, full, value, expected=None, lease=lease, fence=fence)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, fence: Fence | None = None
    ) -> Entry:
        full = self._full(key)
        return await self._writes.write(key, full, value, expected=expected_revision, fence=fence)

    async def batch(self, request: rpc.TxnRequest) -> rpc.TxnResponse:
        """One transaction of coalesced writes (`etcdbatch`)."""
        return await self._call(lambda kv: kv.Txn(request, timeout=self._timeout))

    async def delete(
        self, key: str, *, expected_revision: int | None = None, fence: Fence | None = None
    ) -> Entry:
        full = self._full(key)
        request = rpc.TxnRequest(
            compare=[
                *etcdrpc.expect(full, expected_revision),
                *etcdrpc.fence_compares(fence, root=self._root),
            ],
            success=[
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=full, prev_kv=True))
            ],
            failure=[
                rpc.RequestOp(request_range=rpc.RangeRequest(key=full)),
                *etcdrpc.fence_reads(fence, root=self._root),
            ],
        )
        response = await self._call(lambda kv: kv.Txn(request, timeout=self._timeout))
        if not response.succeeded:
            etcdrpc.check_fence(response, fence, first=1)
            etcdrpc.raise_mismatch(key, response, expected_revision)
        return self._entry(response.responses[0].response_delete_range.prev_kvs[0])

    async def compact(self, revision: int) -> None:
        request = rpc.CompactionRequest(revision=revision, physical=True)
        try:
            await self._call(lambda kv: kv.Compact(request, timeout=self._timeout))
        except Compacted:
            return  # already compacted at or past this revision
        log.debug("store.compacted", revision=revision)

    def fenced(self, fence: Fence) -> FencedView:
        return FencedView(self, fence)

    # -- watch ---------------------------------------------------------------------------

    async def watch(self, prefix: str, *, since: int) -> AsyncIterator[Change]:
        start, end = self._range(prefix)
        next_revision = since + 1
        delay = 0.1
        while not self._closed:
            index, client = await self._client(self._current)
            call = rpc.WatchStub(client.channel).Watch()
            try:
                await call.write(
                    rpc.WatchRequest(
                        create_request=rpc.WatchCreateRequest(
                            key=start,
                            range_end=end,
                            start_revision=next_revision,
                            prev_kv=True,
                            progress_notify=True,
                        )
                    )
                )
                async for response in call:
                    delay = 0.1
                    if response.compact_revision:
                        raise Compacted(
                            f"cannot watch {prefix} from revision {next_revision - 1}: etcd "
                            f"compacted its history up to revision {response.compact_revision}; "
                            "list again and watch from there",
                            compact_revision=response.compact_revision,
                        )
                    if response.canceled:
                        raise StoreError(
                            f"etcd cancelled the watch on {prefix}: {response.cancel_reason}"
                        )
                    if not response.events and not response.created:
                        # Progress notification: nothing under the prefix up to this revision.
                        next_revision = max(next_revision, response.header.revision + 1)
                    for event in response.events:
                        change = self._change(event)
                        next_revision = change.revision + 1
                        yield change
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    return  # close() cancelled the stream, not the caller its task
                raise
            except rpc.AioRpcError as error:
                if not etcdrpc.lost_connection(error):
                    raise etcdrpc.translate(error) from error
                if self._closed:
                    return
                log.warning(
                    "store.watch_interrupted",
                    prefix=prefix,
                    revision=next_revision - 1,
                    endpoint=self._endpoints[index].url,
                    error=error.details(),
                    retry_in=delay,
                )
                self._current = (index + 1) % len(self._endpoints)
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        self._closed = True
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.channel.close()

    # -- plumbing ------------------------------------------------------------------------

    async def _client(self, index: int) -> tuple[int, etcdrpc.Connection]:
        if self._closed:
            raise Unavailable("the etcd store was closed")
        client = self._clients.get(index)
        if client is None:
            endpoint = self._endpoints[index]
            options = list(etcdrpc.CHANNEL_OPTIONS.items())
            if endpoint.secure:
                channel = rpc.secure_channel(endpoint.target, self._credentials, options=options)
            else:
                channel = rpc.insecure_channel(endpoint.target, options=options)
            client = etcdrpc.Connection(channel=channel, kvstub=rpc.KVStub(channel))
            self._clients[index] = client
        return index, client

    async def _call(self, operation: Callable[[T_stub], Awaitable[T]], *, service: str = "kv") -> T:
        """Run one call of etcd's KV service (or Lease, Cluster, Maintenance), trying the
        other endpoints when one cannot be reached at all."""
        failures: list[str] = []
        count = len(self._endpoints)
        first = self._current
        timer = metrics.etcd_timer(sys._getframe(1).f_code.co_name)  # the Store method's name
        for attempt in range(count):
            index, client = await self._client((first + attempt) % count)
            try:
                with timer:
                    result = await operation(etcdrpc.stub(client, service))
            except rpc.AioRpcError as error:
                if not etcdrpc.lost_connection(error):
                    raise etcdrpc.translate(error) from error
                failures.append(f"{self._endpoints[index].url}: {error.details()}")
                self._current = (index + 1) % count
                if etcdrpc.NOT_SENT in (error.details() or ""):
                    continue  # the request never left: safe to send it elsewhere
                break
            self._current = index
            return result
        urls = ", ".join(self.endpoints)
        raise Unavailable(
            f"etcd at {urls} is unreachable: start etcd or pass --etcd ({'; '.join(failures)})"
        )

    def _full(self, key: str) -> bytes:
        return (self._root + key).encode()

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
        if not prefix and self._root:
            prefix = "/"  # everything under the root, not under "/rootx" too
        start = self._full(prefix)
        if not start:
            return b"\0", b"\0"  # every key
        return start, prefix_range_end(start)

    def _key(self, full: bytes) -> str:
        return full.decode()[len(self._root) :]

    def _entry(self, kv: rpc.KeyValue) -> Entry:
        return Entry(
            key=self._key(kv.key),
            value=kv.value,
            revision=kv.mod_revision,
            create_revision=kv.create_revision,
        )

    def _change(self, event: rpc.Event) -> Change:
        if event.type == rpc.Event.DELETE:
            return Change(
                type=EventType.DELETE,
                key=self._key(event.kv.key),
                value=event.prev_kv.value,
                revision=event.kv.mod_revision,
            )
        return Change(
            type=EventType.PUT,
            key=self._key(event.kv.key),
            value=event.kv.value,
            revision=event.kv.mod_revision,
            created=event.kv.create_revision == event.kv.mod_revision,
        )

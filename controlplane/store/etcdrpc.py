"""etcd's wire for EtcdStore: endpoints and channels, error classification, and the
compares and reads of its guarded transactions.

Role: what `controlplane.store.etcd` needs to speak to etcd through aetcd's generated stubs,
apart from the Store's own logic (reads, writes, watches, endpoint failover).

Invariants:
- `lost_connection` is true only for errors where the request may not have reached etcd or
  its answer was lost (unreachable, deadline, a stream ended under it): those are the ones
  the store retries elsewhere or reports `Unavailable`; every other error is `translate`d.
- A fence's compare and read use the same full key (root + fence key), and `check_fence`
  reads the failure branch's response at the index the caller put the fence read.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aetcd import rpc

from controlplane.store import Compacted, Conflict, Fence, Fenced, NotFound, StoreError, Unavailable
from pilothouse.process.pings import ping_options

CHANNEL_OPTIONS = {
    # Reconnect within a second of etcd coming back, however long the outage was.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.min_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
    # Notice a hung etcd under an idle watch within 15 s (gRPC alone would wait a minute for a
    # ping's answer); etcd refuses pings more often than every 5 s.
    **dict(ping_options(interval_ms=10_000, timeout_ms=5_000)),
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_receive_message_length": 64 * 1024**2,
    # etcd is reached directly; an http_proxy meant for the outside world must not apply.
    "grpc.enable_http_proxy": 0,
}
NOT_SENT = "failed to connect to all addresses"
_CONNECTION_CODES = {
    rpc.StatusCode.UNAVAILABLE,
    rpc.StatusCode.DEADLINE_EXCEEDED,
    rpc.StatusCode.CANCELLED,
}
# etcd stopping under a TLS connection ends open streams with RST_STREAM(NO_ERROR), which
# gRPC reports as INTERNAL "Stream removed": a lost connection like any other.
_STREAM_REMOVED = ("Stream removed", "RST_STREAM")
# What etcd answers while its raft leadership moves (a member stopping, a MoveLeader): the
# request may not have been applied; a retry, here or on another member, is the answer.
_TRANSIENT = (
    "raft proposal dropped",
    "leader changed",
    "no leader",
    "timed out waiting for read index",
)
# An etcd member that dies (or is SIGTERMed) under a call: the call ends with no status.
_NO_STATUS = "No status received"


def lost_connection(error: rpc.AioRpcError) -> bool:
    if error.code() in _CONNECTION_CODES:
        return True
    details = error.details() or ""
    if error.code() == rpc.StatusCode.UNKNOWN and _NO_STATUS in details:
        return True
    return error.code() == rpc.StatusCode.INTERNAL and any(s in details for s in _STREAM_REMOVED)


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    host: str
    port: int
    secure: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"etcd endpoint {url!r}: expected https://HOST:PORT (or http:// for a "
                "plaintext etcd)"
            )
        if not parts.hostname:
            raise ValueError(f"etcd endpoint {url!r} has no host; expected https://HOST:PORT")
        return cls(
            url=url, host=parts.hostname, port=parts.port or 2379, secure=parts.scheme == "https"
        )

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def stub(connection: Connection, service: str) -> object:
    if service == "kv":
        return connection.kvstub
    stubs = {"lease": rpc.LeaseStub, "cluster": rpc.ClusterStub, "maintenance": rpc.MaintenanceStub}
    return stubs[service](connection.channel)


@dataclass(slots=True)
class Connection:
    channel: rpc.Channel
    kvstub: rpc.KVStub


def translate(error: rpc.AioRpcError) -> StoreError:
    details = error.details() or ""
    if error.code() == rpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return Compacted(f"etcd: {details}")
    if error.code() == rpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return NotFound(f"etcd: {details}: the lease expired or was revoked")
    if error.code() == rpc.StatusCode.OUT_OF_RANGE and "future revision" in details:
        return StoreError(f"etcd: {details}: the store has not reached that revision yet")
    if any(reason in details for reason in _TRANSIENT):
        return Unavailable(f"etcd: {details} (its members are changing leader): retry")
    return StoreError(f"etcd answered {error.code().name}: {details}")


def expect(full: bytes, expected_revision: int | None) -> list[rpc.Compare]:
    compares = [
        rpc.Compare(key=full, target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0)
    ]
    if expected_revision is not None:
        compares.append(
            rpc.Compare(
                key=full,
                target=rpc.Compare.MOD,
                result=rpc.Compare.EQUAL,
                mod_revision=expected_revision,
            )
        )
    return compares


EXPECT_COMPARES = len(expect(b"", 1))  # compares an update adds to a transaction


def fence_compares(fence: Fence | None, *, root: str) -> list[rpc.Compare]:
    if fence is None:
        return []
    return [
        rpc.Compare(
            key=(root + fence.key).encode(),
            target=rpc.Compare.CREATE,
            result=rpc.Compare.EQUAL,
            create_revision=fence.revision,
        )
    ]


def fence_reads(fence: Fence | None, *, root: str) -> list[rpc.RequestOp]:
    if fence is None:
        return []
    read = rpc.RangeRequest(key=(root + fence.key).encode(), keys_only=True)
    return [rpc.RequestOp(request_range=read)]


def check_fence(response: rpc.TxnResponse, fence: Fence | None, *, first: int) -> None:
    """Raise `Fenced` when a failed transaction failed because the fence no longer holds
    (its read is the failure branch's response at index `first`)."""
    if fence is None:
        return
    found = response.responses[first].response_range.kvs
    if not found or found[0].create_revision != fence.revision:
        raise Fenced(
            f"write refused: the term of {fence.key} at revision {fence.revision} has "
            "ended (its key is gone or was created again)"
        )


def raise_mismatch(key: str, response: rpc.TxnResponse, expected: int | None) -> None:
    found = response.responses[0].response_range.kvs
    if not found:
        raise NotFound(f"{key} not found")
    raise Conflict(
        f"{key} is at revision {found[0].mod_revision}, not {expected}: "
        "it was changed by someone else; read it again and retry"
    )

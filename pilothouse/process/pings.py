"""HTTP/2 keepalive pings as gRPC options, for servers and channels alike.

Role: one place that knows which gRPC arguments make a connection pinged every `interval_ms`
and closed when a ping goes unanswered for `timeout_ms`. Pings are answered by the peer's gRPC
core, with no Python on either side.

Invariant: with gRPC 1.85 the wait for an answer is `grpc.http2.ping_timeout_ms` (default one
minute); `grpc.keepalive_timeout_ms` alone does not shorten it, so both are set. A quiet
connection is pinged too (`max_pings_without_data` 0).
"""

from __future__ import annotations


def ping_options(*, interval_ms: int, timeout_ms: int) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", interval_ms),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.http2.max_pings_without_data", 0),
    ]

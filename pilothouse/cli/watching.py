"""Watches that outlast short outages of the control plane or of etcd, as kubectl's do.

`follow` is `Client.watch` made patient, in the manner of client-go's RetryWatcher: when the
stream fails because the control plane or etcd is briefly unavailable, unreachable or slow,
or simply ends, it waits (0.2 s doubling to 2 s) and watches again from the last
resourceVersion it delivered; when that version is too old to resume from (compacted), it
watches afresh, which replays the current state, and drops what it already delivered unchanged.
`retrying` does the same for one call (the read a watch starts from).

Invariants: a change is delivered at most once per resourceVersion of an object; an error
that retrying cannot fix (not found, forbidden, invalid) is raised at once; an outage longer
than `Patience.outage` seconds is raised as the last error seen, so a watch never hangs
silently; every retry is announced through `on_retry` (the CLI writes it to stderr).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pilothouse.client import Change, ChangeType, Client, ClientError, ErrorCode
from pilothouse.kinds import Kind

T = TypeVar("T")

# The control plane or etcd is down, unreachable or slow for a moment.
RETRYABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT})
# The resourceVersion to resume from is compacted away: watch afresh.
RESTART = frozenset({ErrorCode.CONFLICT})


@dataclass(frozen=True, slots=True)
class Patience:
    outage: float = 60.0  # s without a working call before the error is raised
    initial: float = 0.2
    maximum: float = 2.0


class _Outage:
    """The current run of failures: since when, and how long to wait before the next try."""

    def __init__(self, patience: Patience, on_retry: Callable[[str], None] | None) -> None:
        self._patience = patience
        self._on_retry = on_retry
        self._since: float | None = None
        self._delay = patience.initial

    def ok(self) -> None:
        self._since = None
        self._delay = self._patience.initial

    async def wait(self, reason: str, error: ClientError | None) -> None:
        """Wait before the next try, or raise once the outage has lasted too long."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
        elif now - self._since > self._patience.outage:
            raise error or ClientError(ErrorCode.UNAVAILABLE, reason)
        if self._on_retry is not None:
            self._on_retry(f"{reason}; retrying in {self._delay:g} s")
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._patience.maximum)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    patience: Patience = Patience(),
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """`call()`, tried again through a short outage (see the module)."""
    outage = _Outage(patience, on_retry)
    while True:
        try:
            return await call()
        except ClientError as error:
            if error.code not in RETRYABLE:
                raise
            await outage.wait(error.message, error)


async def follow(
    client: Client,
    kind: Kind,
    *,
    namespace: str = "",
    label_selector: str = "",
    field_selector: str = "",
    resource_version: str = "",
    patience: Patience = Patience(),
    on_retry: Callable[[str], None] | None = None,
) -> AsyncIterator[Change]:
    """The changes of `Client.watch`, resumed through outages (see the module)."""
    resume = resource_version
    delivered: dict[tuple[str, str], str] = {}  # (namespace, name) -> resourceVersion
    outage = _Outage(patience, on_retry)
    while True:
        error: ClientError | None = None
        try:
            async for change in client.watch(
                kind,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resource_version=resume,
            ):
                outage.ok()
                if change.resource_version:
                    resume = change.resource_version
                if change.object is not None and change.type is not ChangeType.BOOKMARK:
                    meta = change.object.metadata  # type: ignore[attr-defined]
                    key = (meta.namespace, meta.name)
                    if change.type is ChangeType.DELETED:
                        delivered.pop(key, None)
                    elif delivered.get(key) == meta.resource_version:
                        continue  # replayed by a fresh watch: delivered already
                    else:
                        delivered[key] = meta.resource_version
                yield change
            reason = "the watch was closed by the control plane"
        except ClientError as err:
            if err.code in RESTART:
                resume = ""  # too old to resume from: start over from the current state
            elif err.code not in RETRYABLE:
                raise
            error, reason = err, f"lost the watch of {kind.info.plural}: {err.message}"
        await outage.wait(reason, error)

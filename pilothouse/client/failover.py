"""Several control-plane members behind one client: calls fail over from one to the next.

Every member serves the whole API, so a client may send any call to any of them. `split`
reads a server setting ("10.0.0.2:7070,10.0.0.3:7070", from `--server`, PILOTHOUSE_SERVER or
`server:` in the config file) into addresses; `Members` keeps one channel per address (made
when first used) and a *current* member, the one that answered last.

Failover rules (`Members.stub()` gives a ControlPlane stub that follows them):
- a unary call goes to the current member; if that member is unreachable (UNAVAILABLE) or
  does not answer in time (DEADLINE_EXCEEDED), the same call goes to the next member, and so
  on once round; the member that answers becomes current. With several members each attempt
  but the last gets at most `ATTEMPT_TIMEOUT` seconds of the call's deadline, so a frozen
  member (SIGSTOP: it accepts connections and never answers) costs one attempt, not the whole
  deadline. Apply, Get, List, Scale and Delete are safe to send again (Apply is declarative;
  a repeated Delete answers NotFound);
- a stream (Watch, PodLogs) opens on the current member; when it fails as unreachable
  (`unreachable(error)`, which the client calls) the next member becomes current, so the
  caller's retry opens elsewhere.
With one address nothing changes: one channel, the call's own deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

ATTEMPT_TIMEOUT = 3.0
FAIL_OVER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def split(server: str) -> list[str]:
    """The addresses in a server setting: "a:7070, b:7070" -> ["a:7070", "b:7070"]."""
    return [part.strip() for part in server.split(",") if part.strip()] or [server]


class Members:
    """Channels to every member of a control plane, and which one is current."""

    def __init__(self, addresses: Sequence[str], make: Callable[[str], grpc.aio.Channel]) -> None:
        self.addresses = list(addresses)
        self._make = make
        self._channels: dict[int, grpc.aio.Channel] = {}
        self.current = 0

    def channel(self, index: int | None = None) -> grpc.aio.Channel:
        index = self.current if index is None else index
        if index not in self._channels:
            self._channels[index] = self._make(self.addresses[index])
        return self._channels[index]

    def failed(self, index: int) -> None:
        """Member `index` did not answer: the next one becomes current (if it still was)."""
        if self.current == index:
            self.current = (index + 1) % len(self.addresses)

    def unreachable(self, error: grpc.aio.AioRpcError) -> None:
        """A call on the current member failed: if as unreachable, the next one is current."""
        if error.code() in FAIL_OVER:
            self.failed(self.current)

    def stub(self, stub_class: type = api_grpc.ControlPlaneStub) -> Any:
        """A stub of `stub_class` (a service every member serves) that fails over."""
        return _Stub(self, stub_class)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    async def __aenter__(self) -> Members:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Stub:
    """A stub over `Members` (see the module docstring)."""

    def __init__(self, members: Members, stub_class: type) -> None:
        self._members = members
        self._class = stub_class
        self._stubs: dict[int, Any] = {}

    def _on(self, index: int) -> Any:
        if index not in self._stubs:
            self._stubs[index] = self._class(self._members.channel(index))
        return self._stubs[index]

    def __getattr__(self, method: str) -> Any:
        members = self._members
        current = members.current
        callable_ = getattr(self._on(current), method)
        if len(members.addresses) == 1 or not isinstance(
            callable_, grpc.aio.UnaryUnaryMultiCallable
        ):
            return callable_  # a stream: its failure is reported with `unreachable`

        async def call(
            request: Any,
            *,
            timeout: float | None = None,  # noqa: ASYNC109 (a gRPC stub's signature)
            **kwargs: Any,
        ) -> Any:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            count = len(members.addresses)
            start = members.current
            for attempt in range(count):
                index = (start + attempt) % count
                last = attempt == count - 1
                left = None if deadline is None else max(deadline - loop.time(), 0.001)
                per_try = left if last else min(left or ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT)
                try:
                    answer = await getattr(self._on(index), method)(
                        request, timeout=per_try, **kwargs
                    )
                except grpc.aio.AioRpcError as error:
                    if last or error.code() not in FAIL_OVER:
                        raise
                    members.failed(index)
                    continue
                members.current = index
                return answer
            raise AssertionError("unreachable")

        return call

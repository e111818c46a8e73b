"""How the agent's heartbeats travel: as messages of one Heartbeats stream to the control plane.

Role: `Registration` sends a heartbeat every interval; sending each as its own call costs the
control plane a call (interceptors, a task, a certificate check) per node per second, which
a thousand nodes turn into most of its CPU. `BeatSender.send` writes it to one long call
instead, with the same outcomes a Heartbeat call has; every `ACK_EVERY`-th beat (and the first
of a stream) asks for an answer and waits for it, so a control plane that stopped answering
is noticed within that many beats, while it writes an answer only that often.

Invariants: `send` returns once the beat is written (answered, for those that ask), or raises
the `grpc.aio.AioRpcError` a Heartbeat call would have raised: the status that ended the
stream (NOT_FOUND to register again, ...; read by a reader of the stream's answers, so a
refusal is seen at the next beat), UNAVAILABLE, or DEADLINE_EXCEEDED after `deadline_s`
without an answer asked for; after an error the next `send` opens a new stream. A control
plane that does not know the stream (UNIMPLEMENTED) gets Heartbeat calls from then on.
`close` ends the stream. `streaming` says a stream is open and has not ended: while it holds,
the control plane hears the agent without messages (see `nodeagent.registration`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

ACK_EVERY = 3


class BeatSender:
    """Heartbeats over one NodeRegistry channel (`stub`)."""

    def __init__(self, stub: api_grpc.NodeRegistryStub) -> None:
        self._stub = stub
        self._call: Any = None  # the open Heartbeats stream, if any
        self._reader: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[None] = asyncio.Queue()
        self._ended: grpc.aio.AioRpcError | None = None  # how the stream ended
        self._sent = 0  # beats written to it
        self.calls_only = False  # the control plane has no Heartbeats stream

    @property
    def streaming(self) -> bool:
        return self._call is not None and self._ended is None

    async def send(self, request: api.HeartbeatRequest, *, deadline_s: float) -> None:
        if self.calls_only:
            await self._stub.Heartbeat(request, timeout=deadline_s)
            return
        if self._call is None:
            self._open()
        request.ack = self._sent % ACK_EVERY == 0
        self._sent += 1
        try:
            async with asyncio.timeout(deadline_s):
                await self._exchange(request)
        except TimeoutError:
            self.close()
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer to a heartbeat") from None
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
            if self._reader is not None:  # a failed write: the stream's own end says why
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(self._reader)
            ended = self._ended or (
                error
                if isinstance(error, grpc.aio.AioRpcError)
                else _error(grpc.StatusCode.UNAVAILABLE, "the heartbeat stream ended")
            )
            self.close()
            if ended.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise ended from None
            self.calls_only = True
            await self._stub.Heartbeat(request, timeout=deadline_s)

    def _open(self) -> None:
        self._call, self._sent, self._ended = self._stub.Heartbeats(), 0, None
        self._answers = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read(self._call))

    async def _read(self, call: Any) -> None:
        try:
            async for _ in call:
                self._answers.put_nowait(None)
            self._ended = _error(grpc.StatusCode.UNAVAILABLE, "the heartbeat stream ended")
        except grpc.aio.AioRpcError as error:
            self._ended = error
        self._answers.put_nowait(None)  # wakes a beat waiting for its answer

    async def _exchange(self, request: api.HeartbeatRequest) -> None:
        if self._ended is not None:
            raise self._ended
        await self._call.write(request)
        if request.ack:
            await self._answers.get()
            if self._ended is not None:
                raise self._ended

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
        self._call = self._reader = None


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)

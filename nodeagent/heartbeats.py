"""How the agent's heartbeats travel: as messages of one Heartbeats stream to the control plane.

Role: `Registration` sends a heartbeat every interval; sending each as its own call costs the
control plane a call (interceptors, a task, a certificate check) per node per second, which
a thousand nodes turn into most of its CPU. `BeatSender.send` writes it to one long call
instead and waits for its answer, with the same outcomes a Heartbeat call has.

Invariants: `send` returns once the control plane recorded the beat, or raises the
`grpc.aio.AioRpcError` a Heartbeat call would have raised (its status ends the stream:
NOT_FOUND to register again, UNAVAILABLE, DEADLINE_EXCEEDED after `deadline_s`); after an error
the next `send` opens a new stream. A control plane that does not know the stream
(UNIMPLEMENTED) gets Heartbeat calls from then on. `close` ends the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc


class BeatSender:
    """Heartbeats over one NodeRegistry channel (`stub`)."""

    def __init__(self, stub: api_grpc.NodeRegistryStub) -> None:
        self._stub = stub
        self._call: Any = None  # the open Heartbeats stream, if any
        self.calls_only = False  # the control plane has no Heartbeats stream

    async def send(self, request: api.HeartbeatRequest, *, deadline_s: float) -> None:
        if self.calls_only:
            await self._stub.Heartbeat(request, timeout=deadline_s)
            return
        if self._call is None:
            self._call = self._stub.Heartbeats()
        call = self._call
        try:
            await asyncio.wait_for(self._exchange(call, request), deadline_s)
        except TimeoutError:
            self.close()
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer to a heartbeat") from None
        except grpc.aio.AioRpcError as error:
            self.close()
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            self.calls_only = True
            await self._stub.Heartbeat(request, timeout=deadline_s)
        except Exception:  # the stream ended under a write: its status says why
            self.close()
            raise await _ended(call) from None

    async def _exchange(self, call: Any, request: api.HeartbeatRequest) -> None:
        await call.write(request)
        if await call.read() is grpc.aio.EOF:
            raise await _ended(call)

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


async def _ended(call: Any) -> grpc.aio.AioRpcError:
    """The error a stream that ended stands for (its status, or UNAVAILABLE if it was OK)."""
    code = await call.code()
    if code is grpc.StatusCode.OK or code is grpc.StatusCode.CANCELLED:
        return _error(grpc.StatusCode.UNAVAILABLE, "the heartbeat stream ended")
    return _error(code, await call.details() or code.name)


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)

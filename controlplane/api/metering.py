"""Counting and timing every API call (`pilothouse_api_requests_total`,
`pilothouse_api_request_duration_seconds`), as a server interceptor.

The method label is the service and method ("ControlPlane/Get"); the code label is the gRPC
status the call ended with ("OK", "NOT_FOUND" …; "CANCELLED" when the client went away).
A stream is timed until it ends.

Invariants: metering never changes what a call does or answers; it wraps the handler the
other interceptors returned (so a refused call is counted with its refusal's code).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from controlplane import metrics

_SHAPES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = None
    try:
        code = context.code()
    except Exception:  # older grpc: no code() on the context
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    return "OK" if error is None else "UNKNOWN"


def _record(method: str, context: grpc.aio.ServicerContext, began: float, error: Any) -> None:
    code = _code(context, error)
    metrics.child(metrics.API_REQUESTS, method, code).inc()
    metrics.child(metrics.API_SECONDS, method, code).observe(time.perf_counter() - began)


def _metered(inner: Any, method: str, streams_out: bool) -> Callable[..., Any]:
    if streams_out:

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            began, error = time.perf_counter(), None
            try:
                result = inner(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:
                    await result
            except BaseException as exc:
                error = exc
                raise
            finally:
                _record(method, context, began, error)

        return streaming

    async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
        began, error = time.perf_counter(), None
        try:
            return await inner(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _record(method, context, began, error)

    return single


class Metering(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit(".", 1)[-1]  # "ControlPlane/Get"
        for attribute, make, streams_out in _SHAPES:
            inner = getattr(handler, attribute)
            if inner:
                return make(
                    _metered(inner, method, streams_out),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

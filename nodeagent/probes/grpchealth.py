"""The gRPC health check (grpc.health.v1.Health/Check) over plaintext HTTP/2, as a probe.

Kubernetes' `grpc` probe calls the standard health service on the pod's IP and port and
succeeds only when it answers SERVING. This is just enough HTTP/2 for one unary call on a
connection of our own (the probes package may not use grpcio, and a probe needs none of it):
the client preface and an empty SETTINGS frame, one HEADERS frame (HPACK literals without
indexing, no Huffman coding), one DATA frame with the request, then frames are read until the
stream ends: the server's SETTINGS and PINGs are acknowledged, DATA frames of stream 1 hold
the answer, a RST_STREAM or GOAWAY ends the call.

Invariant: a probe outcome is always a (healthy, message) pair in the kubelet's words
(`service unhealthy (responded with "NOT_SERVING")`); nothing here raises for what the server
says, only for the connection (`OSError`), which the caller words.
"""

from __future__ import annotations

import asyncio
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
METHOD = "/grpc.health.v1.Health/Check"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_MAX_FRAME = 1 << 20


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """An HPACK header field: literal without indexing, literal name, no Huffman."""
    out = b"\x00"
    for text in (name.encode(), value.encode()):
        out += _length(len(text)) + text
    return out


def _length(n: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (the H bit clear)."""
    if n < 127:
        return bytes([n])
    out = bytearray([127])
    n -= 127
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def request(authority: str, service: str) -> bytes:
    """Everything the client sends: preface, SETTINGS, HEADERS and DATA of stream 1."""
    headers = b"".join(
        _literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", METHOD),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "kube-probe/1.30"),
        )
    )
    message = b"\x0a" + _varint(len(service.encode())) + service.encode() if service else b""
    body = b"\x00" + struct.pack(">I", len(message)) + message
    return (
        PREFACE
        + _frame(_SETTINGS, 0, 0)
        + _frame(_HEADERS, _END_HEADERS, 1, headers)
        + _frame(_DATA, _END_STREAM, 1, body)
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 127
        n >>= 7
        if n:
            out.append(byte | 128)
        else:
            out.append(byte)
            return bytes(out)


async def check(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, authority: str, service: str
) -> tuple[bool, str]:
    """One Health/Check call on an open connection: (healthy, the kubelet's message)."""
    writer.write(request(authority, service))
    await writer.drain()
    answer = b""
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        if length > _MAX_FRAME:
            return False, "the health check's answer is not gRPC (an oversized frame)"
        payload = await reader.readexactly(length)
        if kind == _SETTINGS and not flags & _ACK:
            writer.write(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING and not flags & _ACK:
            writer.write(_frame(_PING, _ACK, 0, payload))
        elif kind == _GOAWAY:
            return False, "the server closed the connection (GOAWAY) before answering"
        elif stream == 1 and kind == _RST_STREAM:
            return False, "the server reset the health check call"
        elif stream == 1 and kind == _DATA:
            if flags & _PADDED and payload:
                payload = payload[1 : len(payload) - payload[0]]
            answer += payload
        if stream == 1 and kind in (_DATA, _HEADERS) and flags & _END_STREAM:
            return _verdict(answer)


def _verdict(answer: bytes) -> tuple[bool, str]:
    if len(answer) < 5:
        return False, (
            "this server does not implement the grpc health protocol (grpc.health.v1.Health), "
            "or the service is unknown: it answered without a status"
        )
    message = answer[5 : 5 + int.from_bytes(answer[1:5], "big")]
    status = 0
    if len(message) >= 2 and message[0] == 0x08:
        status = message[1]
    name = _STATUS.get(status, str(status))
    if name == "SERVING":
        return True, ""
    return False, f'service unhealthy (responded with "{name}")'

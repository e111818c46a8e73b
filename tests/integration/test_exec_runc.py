"""`runc exec` sessions of the agent (nodeagent.runtime.execs) into a real busybox container:
a terminal that is a device, follows resizes and passes Ctrl-C and exit codes; pipes that are
byte-exact; attach that sees the main process's output."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nodeagent.runtime import execs
from tests.fixtures.runtime import busybox_spec

pytestmark = [pytest.mark.root]


async def _start(rt: object, rootfs: Path, script: str) -> str:
    from nodeagent.runtime.runc import RuncRuntime

    assert isinstance(rt, RuncRuntime)
    cid = f"exec-{os.urandom(3).hex()}"
    await rt.create(busybox_spec(rootfs, cid, "/bin/sh", "-c", script))
    await rt.start(cid)
    return cid


async def _session(rt: object, cid: str, *argv: str, **kw: object) -> execs.ExecSession:
    return await execs.start_exec(
        runc=rt.runc,  # type: ignore[attr-defined]
        root=rt.state_dir / "runc",  # type: ignore[attr-defined]
        container_id=cid,
        argv=argv,
        scratch=rt.state_dir / "execs",  # type: ignore[attr-defined]
        **kw,  # type: ignore[arg-type]
    )


async def _read_until(session: execs.ExecSession, wanted: bytes, seen: bytearray) -> None:
    async with asyncio.timeout(10):
        async for chunk in session.output():
            seen += chunk.data
            if wanted in seen:
                return
    raise AssertionError(f"the session ended before {wanted!r}; it wrote {bytes(seen)!r}")


async def test_a_terminal_answers_tty_follows_resize_and_passes_the_exit_code(
    runc_runtime: object, busybox_rootfs: Path
) -> None:
    cid = await _start(runc_runtime, busybox_rootfs, "sleep 1000")
    session = await _session(runc_runtime, cid, "/bin/sh", stdin=True, tty_size=execs.Size(30, 100))
    seen = bytearray()
    try:
        await session.write(b"tty; stty size\n")
        await _read_until(session, b"30 100", seen)
        assert b"/dev/pts/" in seen, f"tty did not name a terminal device: {bytes(seen)!r}"
        session.resize(execs.Size(50, 132))
        seen.clear()
        await session.write(b"stty size\n")
        await _read_until(session, b"50 132", seen)
        # Ctrl-C interrupts the foreground command, not the shell.
        await session.write(b"sleep 100\n")
        await asyncio.sleep(0.3)
        await session.write(b"\x03")
        seen.clear()
        await session.write(b"echo alive-$((40+2))\n")
        await _read_until(session, b"alive-42", seen)
        await session.write(b"exit 3\n")
        async with asyncio.timeout(10):
            async for _ in session.output():
                pass
        assert await session.exit_code() == 3
    finally:
        await session.close()


async def test_pipes_are_byte_exact_both_ways(runc_runtime: object, busybox_rootfs: Path) -> None:
    cid = await _start(runc_runtime, busybox_rootfs, "sleep 1000")
    payload = os.urandom(1024 * 1024)
    session = await _session(runc_runtime, cid, "cat", stdin=True, tty_size=None)
    received = bytearray()

    async def feed() -> None:
        for i in range(0, len(payload), 64 * 1024):
            await session.write(payload[i : i + 64 * 1024])
        await session.close_stdin()

    try:
        feeder = asyncio.create_task(feed())
        async with asyncio.timeout(30):
            async for chunk in session.output():
                assert chunk.stream is execs.Stream.STDOUT
                received += chunk.data
        await feeder
        assert await session.exit_code() == 0
        assert bytes(received) == payload, "cat gave back other bytes than it was given"
    finally:
        await session.close()


async def test_stderr_apart_and_exit_code(runc_runtime: object, busybox_rootfs: Path) -> None:
    cid = await _start(runc_runtime, busybox_rootfs, "sleep 1000")
    session = await _session(
        runc_runtime, cid, "sh", "-c", "echo out; echo err >&2; exit 7", stdin=False, tty_size=None
    )
    streams: dict[execs.Stream, bytes] = {}
    try:
        async with asyncio.timeout(10):
            async for chunk in session.output():
                streams[chunk.stream] = streams.get(chunk.stream, b"") + chunk.data
        assert await session.exit_code() == 7
        assert streams == {execs.Stream.STDOUT: b"out\n", execs.Stream.STDERR: b"err\n"}
    finally:
        await session.close()


async def test_attach_sees_the_main_process_output(
    runc_runtime: object, busybox_rootfs: Path
) -> None:
    import json

    cid = await _start(
        runc_runtime,
        busybox_rootfs,
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
    )
    bundle = runc_runtime.bundle_dir(cid)  # type: ignore[attr-defined]
    uuid = json.loads((bundle / "meta.json").read_text())["uuid"]
    path = execs.attach_socket(
        bundle,
        socket_dir=runc_runtime.state_dir / "sockets",  # type: ignore[attr-defined]
        container_uuid=uuid,
    )
    sock = await execs.connect_attach(path)
    seen = b""
    output = execs.attached(sock)
    try:
        async with asyncio.timeout(10):
            async for chunk in output:
                seen += chunk.data
                if seen.count(b"tick-") >= 3:
                    break
    finally:
        await output.aclose()
    assert b"tick-" in seen

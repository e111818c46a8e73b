"""`pilothouse exec POD [-c C] [-i] [-t] -- CMD...` and `pilothouse attach POD`: a process in a
container, through the control plane to the agent of the pod's node.

With `-t` (and standard input a terminal) the local terminal is put in raw mode for the session
and restored after it, whatever way it ends: every key goes to the container's terminal as it
is (Ctrl-C interrupts the process in the container, Ctrl-D is its end of file), and a window
resize (SIGWINCH) is sent along. Without `-t`, standard input (with `-i`) and the output
streams are passed byte for byte, stdout to stdout and stderr to stderr.

Invariants: the exit code of `exec` is the process's own (`exit 3` → 3); a refused request
(no such pod, not running, no such container) is one `error:` line and exit code 1; the
terminal is never left in raw mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from pilothouse.cli import podtarget
from pilothouse.cli.context import Context
from pilothouse.cli.usage import UsageError
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

READ_CHUNK = 64 * 1024


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exec",
        help="run a command in a container",
        description="Run a command in a running container: `exec POD [-c C] [-it] -- CMD ...`.",
    )
    parser.add_argument("pod", metavar="POD | pod/NAME | deployment/NAME | svc/NAME")
    parser.add_argument("command", nargs="*", metavar="-- COMMAND [ARG ...]")
    _common(parser)
    parser.add_argument("-i", "--stdin", action="store_true", help="pass standard input")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    _command_after_dashes(parser)
    attach = subparsers.add_parser(
        "attach",
        help="show the output of a container's main process as it runs",
        description="Follow the output of a running container's process: `attach POD [-c C]`.",
    )
    attach.add_argument("pod", metavar="POD | pod/NAME | deployment/NAME")
    _common(attach)
    attach.add_argument("-i", "--stdin", action="store_true", help="pass standard input")


def _command_after_dashes(parser: argparse.ArgumentParser) -> None:
    """Everything after `--` is the command, options of the command included (`-c` of `sh -c`
    is not exec's -c): the words after it are set aside before the flags are parsed."""
    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        words = list(args or [])
        tail: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, tail = words[:cut], words[cut + 1 :]
        parsed, extras = parse(words, namespace)
        parsed.command = [*(parsed.command or []), *tail]
        return parsed, extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--container", default="", help="the container (default: first)")
    parser.add_argument("-n", "--namespace", default=None)


async def run_exec(args: argparse.Namespace, ctx: Context) -> int:
    command = list(args.command)
    if not command:
        raise UsageError("exec needs a command after `--`: exec POD -- CMD [ARG ...]")
    return await _session(args, ctx, command=command, attach=False)


async def run_attach(args: argparse.Namespace, ctx: Context) -> int:
    return await _session(args, ctx, command=[], attach=True)


VERBS = {"exec": run_exec, "attach": run_attach}


async def _session(
    args: argparse.Namespace, ctx: Context, *, command: list[str], attach: bool
) -> int:
    kind, name = podtarget.parse(args.pod, verb="attach" if attach else "exec")
    namespace = ctx.namespace(args.namespace)
    want_tty = bool(getattr(args, "tty", False))
    stdin_fd = sys.stdin.fileno() if args.stdin else None
    raw = want_tty and stdin_fd is not None and os.isatty(stdin_fd)
    if want_tty and stdin_fd is not None and not raw:
        ctx.warn("Unable to use a TTY - input is not a terminal or the right kind of file")
    async with ctx.connect() as client:
        pod, _ = await podtarget.resolve(client, kind, name, namespace=namespace, err=ctx.err)
        start = agent_pb2.ExecStart(
            namespace=pod.metadata.namespace,
            pod=pod.metadata.name,
            container=args.container,
            command=command,
            stdin=stdin_fd is not None,
            tty=want_tty,
        )
        if want_tty:
            rows, cols = _size()
            start.size.rows, start.size.cols = rows, cols
        inputs: asyncio.Queue[agent_pb2.ExecInput | None] = asyncio.Queue()
        stub = client.service(api_grpc.PodAccessStub)
        call = (stub.Attach if attach else stub.Exec)(_requests(start, inputs))
        stdout, stderr = _sink(ctx.out), _sink(ctx.err)
        code = 0
        with client.errors(Kind.POD, pod.metadata.name), _terminal(raw, stdin_fd) as restore:
            reader: _StdinReader | None = None
            try:
                async for out in call:
                    which = out.WhichOneof("output")
                    if which == "started":
                        if stdin_fd is not None:
                            reader = _StdinReader(stdin_fd, inputs, tty=want_tty)
                        if want_tty:
                            _on_resize(inputs)
                    elif which == "stdout":
                        stdout(out.stdout)
                    elif which == "stderr":
                        stderr(out.stderr)
                    elif which == "exit":
                        code = out.exit.code
                        if out.exit.message and attach:
                            restore()
                            ctx.warn(out.exit.message)
            finally:
                call.cancel()
                inputs.put_nowait(None)
                if reader is not None:
                    reader.stop()
                if want_tty:
                    with contextlib.suppress(Exception):
                        asyncio.get_running_loop().remove_signal_handler(signal.SIGWINCH)
    return code


async def _requests(
    start: agent_pb2.ExecStart, inputs: asyncio.Queue[agent_pb2.ExecInput | None]
) -> AsyncIterator[agent_pb2.ExecInput]:
    yield agent_pb2.ExecInput(start=start)
    while (item := await inputs.get()) is not None:
        yield item


def _sink(stream: Any) -> Callable[[bytes], None]:
    buffer: BinaryIO | None = getattr(stream, "buffer", None)

    def write(data: bytes) -> None:
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            stream.write(data.decode("utf-8", errors="replace"))
            stream.flush()

    return write


def _size() -> tuple[int, int]:
    for fd in (1, 0, 2):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return 24, 80


def _on_resize(inputs: asyncio.Queue[agent_pb2.ExecInput | None]) -> None:
    def resized() -> None:
        rows, cols = _size()
        inputs.put_nowait(agent_pb2.ExecInput(resize=agent_pb2.TerminalSize(rows=rows, cols=cols)))

    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGWINCH, resized)


@contextlib.contextmanager
def _terminal(raw: bool, fd: int | None) -> Any:
    """Raw mode on `fd` for the block (when `raw`); yields a function that restores early."""
    if not raw or fd is None:
        yield lambda: None
        return
    saved = termios.tcgetattr(fd)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            restored = True

    tty.setraw(fd)
    try:
        yield restore
    finally:
        restore()


class _StdinReader:
    """Standard input read in a thread (a file, a pipe or a terminal alike) and queued as
    ExecInput; end of file is `stdin_closed` (not with a terminal: there Ctrl-D is a byte)."""

    def __init__(
        self, fd: int, inputs: asyncio.Queue[agent_pb2.ExecInput | None], *, tty: bool
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._inputs = inputs
        self._fd = fd
        self._tty = tty
        self._stopped = False
        self._thread = threading.Thread(target=self._read, name="stdin", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopped:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except OSError:
                data = b""
            if self._stopped:
                return
            if not data:
                if not self._tty:
                    self._put(agent_pb2.ExecInput(stdin_closed=True))
                return
            self._put(agent_pb2.ExecInput(stdin=data))

    def _put(self, item: agent_pb2.ExecInput) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._inputs.put_nowait, item)

    def stop(self) -> None:
        self._stopped = True  # a blocked read ends with the process

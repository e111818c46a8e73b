"""Interactive processes in a running container: `runc exec` with pipes or a terminal, and
attaching to a container's main process through its monitor.

Vocabulary:
- session (`ExecSession`): one process started in a container's namespaces and cgroup, with
  the container's environment, user and working directory (runc reads them from the bundle).
  Its output arrives as `Output` chunks; `exit_code()` is known once it has ended and every
  byte it wrote was read.
- terminal (`tty`): runc makes a pseudo-terminal inside the container (its own devpts) and
  copies between it and runc's own stdio. Here runc's stdio is the slave of a second pty on
  the node, set raw before runc starts, so bytes pass unchanged both ways (Ctrl-C is byte
  0x03, turned into SIGINT by the container's terminal, not by ours) and a resize is our
  TIOCSWINSZ followed by SIGWINCH to runc, which copies the size inward.

Invariants:
- Without a terminal, stdout and stderr are separate streams and every byte is passed on
  unchanged and in order per stream; stdin is a pipe closed by `close_stdin` (end of file).
- `close()` ends whatever still runs: the process inside the container (its pid file) first,
  then runc, then our file descriptors; it is idempotent and never raises.
- `exit_code()` is the process's own code (runc's exit code: 128 + N for signal N).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import pty
import signal
import socket
import struct
import tempfile
import termios
import tty
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from nodeagent.runtime import RuntimeError_

log = structlog.get_logger(__name__)

READ_CHUNK = 64 * 1024
# conmon's attach socket: each packet is one byte naming the pipe, then the data.
_ATTACH_STDOUT, _ATTACH_STDERR = 2, 3
_ATTACH_PACKET = 8192 + 1


class Stream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class Output:
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class Size:
    rows: int
    cols: int


def set_size(fd: int, size: Size) -> None:
    """Set a terminal's window size (rows, columns)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.rows, size.cols, 0, 0))


class ExecSession:
    """One `runc exec` (see the module docstring); made by `start_exec`."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        pid_file: Path,
        master: int | None,
        container_id: str,
    ) -> None:
        self._proc = proc
        self._pid_file = pid_file
        self._master = master
        self.container_id = container_id
        self._output: asyncio.Queue[Output | None] = asyncio.Queue(maxsize=64)
        self._readers: list[asyncio.Task[None]] = []
        self._closed = False
        if master is not None:
            self._readers.append(asyncio.create_task(self._read_master(master), name="exec.tty"))
        else:
            assert proc.stdout is not None and proc.stderr is not None
            self._readers.append(
                asyncio.create_task(self._read_pipe(proc.stdout, Stream.STDOUT), name="exec.out")
            )
            self._readers.append(
                asyncio.create_task(self._read_pipe(proc.stderr, Stream.STDERR), name="exec.err")
            )
        self._pending = len(self._readers)

    @property
    def tty(self) -> bool:
        return self._master is not None

    async def output(self) -> AsyncIterator[Output]:
        """Every chunk the process writes, until it closed its output (it ended)."""
        while self._pending:
            item = await self._output.get()
            if item is None:
                self._pending -= 1
                continue
            yield item

    async def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._master is not None:
            await _write_fd(self._master, data)
            return
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            return
        stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await stdin.drain()

    async def close_stdin(self) -> None:
        """End of input: the process reads end-of-file (with a terminal: Ctrl-D, once)."""
        if self._master is not None:
            await self.write(b"\x04")
            return
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await stdin.wait_closed()

    def resize(self, size: Size) -> None:
        if self._master is None or self._closed or size.rows <= 0 or size.cols <= 0:
            return
        with contextlib.suppress(OSError):
            set_size(self._master, size)
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGWINCH)  # runc copies our size into the container

    async def exit_code(self) -> int:
        """The process's exit code, once it has ended (its output was read to the end)."""
        code = await self._proc.wait()
        return code if code >= 0 else 128 - code

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.returncode is None:
            _kill_pid_file(self._pid_file)  # the process inside the container, then runc
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
        with contextlib.suppress(OSError):
            self._pid_file.unlink()
            self._pid_file.parent.rmdir()

    async def _read_pipe(self, reader: asyncio.StreamReader, stream: Stream) -> None:
        with contextlib.suppress(OSError, ValueError):
            while data := await reader.read(READ_CHUNK):
                await self._output.put(Output(stream, data))
        await self._output.put(None)  # (not when cancelled: then nobody reads any more)

    async def _read_master(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable.set)
        try:
            while True:
                try:
                    data = os.read(fd, READ_CHUNK)
                except BlockingIOError:
                    readable.clear()
                    await readable.wait()
                    continue
                except OSError:  # EIO: every slave closed (runc ended)
                    break
                if not data:
                    break
                await self._output.put(Output(Stream.STDOUT, data))
        finally:
            loop.remove_reader(fd)
        await self._output.put(None)


async def _write_fd(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
            continue
        view = view[written:]


async def start_exec(
    *,
    runc: str,
    root: Path,
    container_id: str,
    argv: Sequence[str],
    stdin: bool,
    tty_size: Size | None,
    scratch: Path,
) -> ExecSession:
    """Start `argv` in the container (a terminal when `tty_size` is given). `scratch` is a
    directory for the session's pid file. RuntimeError_ when runc refuses at once."""
    if not argv:
        raise RuntimeError_("a command is required")
    os.makedirs(scratch, exist_ok=True)
    pid_file = Path(tempfile.mkdtemp(prefix="exec-", dir=scratch)) / "pid"
    args = [runc, "--root", str(root), "exec", "--pid-file", str(pid_file)]
    if tty_size is None:
        proc = await asyncio.create_subprocess_exec(
            *args,
            container_id,
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return ExecSession(proc, pid_file=pid_file, master=None, container_id=container_id)
    master, slave = pty.openpty()
    try:
        tty.setraw(slave)  # raw before runc starts: no echo or translation by our terminal
        set_size(slave, tty_size)
        proc = await asyncio.create_subprocess_exec(
            *args,
            "--tty",
            container_id,
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return ExecSession(proc, pid_file=pid_file, master=master, container_id=container_id)


def _kill_pid_file(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


async def connect_attach(socket_path: Path) -> socket.socket:
    """A connection to a container's monitor's attach socket (conmon's), or RuntimeError_."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, str(socket_path))
    except OSError as exc:
        sock.close()
        raise RuntimeError_(
            f"cannot attach to the container's monitor ({socket_path}): {exc.strerror or exc}"
        ) from None
    return sock


async def attached(sock: socket.socket) -> AsyncIterator[Output]:
    """The output of a container's main process from now on, read from its monitor's attach
    socket (packets of one pipe byte and the data); ends when the container ends. Closes
    `sock`."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                packet = await loop.sock_recv(sock, _ATTACH_PACKET)
            except ConnectionError:
                return
            if not packet:
                return
            pipe, data = packet[0], packet[1:]
            if data:
                yield Output(Stream.STDERR if pipe == _ATTACH_STDERR else Stream.STDOUT, data)
    finally:
        sock.close()


def attach_socket(bundle: Path, *, socket_dir: Path, container_uuid: str) -> Path:
    """Where conmon listens for attaching clients: `<bundle>/attach`, reached through its short
    link `<socket dir>/<uuid>` when the bundle's path is too long for a unix socket."""
    direct = bundle / "attach"
    if len(str(direct)) < 100:
        return direct
    return socket_dir / container_uuid / "attach"

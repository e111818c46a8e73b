"""Getting into pods (issue 16) on a cluster of real processes (control plane with embedded
etcd, one runc agent), through the `pilothouse` command as a person runs it:

- `exec -it` on a pseudo-terminal: `tty` names a device, `stty size` follows a resize of the
  local terminal, Ctrl-C interrupts the command in the container, `exit 3` exits 3;
- `exec -i` without a terminal passes 1 MiB through `cat` byte for byte;
- `attach` shows the main process's output as it is written;
- `cp` out of and into a container, and a copy refused (nothing written) when the container's
  archive has a link pointing out of the destination;
- `port-forward` to busybox httpd: 100 requests at once all answered; deleting the pod ends the
  forward with a line saying so;
- bad input, each one `error:` line: exec into a missing pod, into a pod that is not running,
  with a container the pod lacks; port-forward to a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o
from tests.fixtures.agents import Cluster as _Cluster
from tests.fixtures.agents import ClusterFactory, eventually

pytestmark = [pytest.mark.slow, pytest.mark.root]

PAGE = b"hello from the pod\n"


def _pod(name: str, script: str, *, image: str = "busybox:stable") -> o.Pod:
    pod = o.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.labels["app"] = name
    pod.spec.termination_grace_period_seconds = 1
    c = pod.spec.containers.add(name="main", image=image)
    c.command[:] = ["sh", "-c", script]
    return pod


async def _running(cluster: _Cluster, *names: str) -> None:
    async with cluster.client() as client:

        async def up() -> object:
            pods = {p.metadata.name: p for p in (await client.list(Kind.POD)).items}
            phases = {n: pods[n].status.phase if n in pods else "missing" for n in names}
            return all(v == "Running" for v in phases.values()) or phases

        await eventually(up, f"pods {names} never ran", within=60)


def _cli(cluster: _Cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "pilothouse.cli.main", "--server", cluster.address, *args]


class Terminal:
    """`pilothouse exec -it …` on a pseudo-terminal of its own, as a person's terminal."""

    def __init__(self, argv: list[str], *, rows: int = 30, cols: int = 100) -> None:
        self.master, slave = pty.openpty()
        self.resize(rows, cols)
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.seen = b""
        self.pos = 0

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, wanted: bytes, *, within: float = 20) -> bytes:
        """Wait for `wanted` after what earlier expects matched; what came before it."""
        import select

        deadline = time.monotonic() + within
        while wanted not in self.seen[self.pos :]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the terminal never showed {wanted!r}: {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"the terminal closed before {wanted!r}: {self.seen[-500:]!r}")
            if b"\x1b[6n" in chunk:  # where is the cursor? (busybox's line editing asks)
                self.send(b"\x1b[1;1R")  # a terminal's answer
            self.seen += chunk
        at = self.seen.index(wanted, self.pos)
        before, self.pos = self.seen[self.pos : at], at + len(wanted)
        return before

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


async def test_exec_cp_and_port_forward(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    cluster = await cluster_factory(agents=1, runtime="runc")
    async with cluster.client() as client:
        await client.apply(_pod("shell", "trap 'exit 0' TERM; sleep 100000 & wait"))
        web = _pod(
            "web",
            f"mkdir -p /www && printf '{PAGE.decode().strip()}\\n' > /www/index.html && "
            "exec httpd -f -p 8080 -h /www",
        )
        web.spec.containers[0].ports.add(container_port=8080, name="http")
        await client.apply(web)
        await client.apply(_pod("broken", "sleep 1", image="busybox:no-such-tag"))
        await client.apply(
            _pod("ticker", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done")
        )
    await _running(cluster, "shell", "web", "ticker")

    # attach: the main process's output from now on.
    attach = await asyncio.create_subprocess_exec(
        *_cli(cluster, "attach", "ticker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert attach.stdout is not None
        first = await asyncio.wait_for(attach.stdout.readline(), 20)
        second = await asyncio.wait_for(attach.stdout.readline(), 20)
        assert first.startswith(b"tick-") and second.startswith(b"tick-"), (first, second)
        assert int(second[5:]) == int(first[5:]) + 1, "attach skipped or repeated output"
    finally:
        attach.kill()
        await attach.wait()

    # exec -it: a terminal inside, resizes, Ctrl-C, the exit code.
    term = Terminal(_cli(cluster, "exec", "-it", "shell", "--", "sh"))
    try:
        term.expect(b"# ")  # the shell's prompt
        term.send(b"tty\n")
        term.expect(b"/dev/pts/")  # `tty` names a terminal device
        term.expect(b"# ")
        term.send(b"stty size\n")
        term.expect(b"30 100")
        term.expect(b"# ")
        term.resize(50, 132)
        term.proc.send_signal(signal.SIGWINCH)  # as the terminal does on a resize
        deadline = time.monotonic() + 20  # the new size travels CLI -> control plane -> agent
        while True:
            term.send(b"stty size\n")
            shown = term.expect(b"# ")  # the command's output, up to the next prompt
            if b"50 132" in shown:
                break
            assert time.monotonic() < deadline, f"the container never saw the resize: {shown!r}"
            await asyncio.sleep(0.2)
        term.send(b"sleep 100\n")
        await asyncio.sleep(0.5)
        term.send(b"\x03")  # Ctrl-C ends `sleep 100`, not the shell
        term.send(b"echo back-$((40+2))\n")
        term.expect(b"back-42")
        term.send(b"exit 3\n")
        assert await asyncio.to_thread(term.proc.wait, 20) == 3
    finally:
        term.close()

    # exec -i without a terminal: byte-exact both ways.
    payload = os.urandom(1024 * 1024)
    proc = await asyncio.create_subprocess_exec(
        *_cli(cluster, "exec", "-i", "shell", "--", "cat"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(payload), 60)
    assert proc.returncode == 0, err.decode()
    assert len(out) == len(payload) and out == payload, "cat gave back other bytes"

    # cp out and in.
    made = await cluster.cli(
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "mkdir -p /d/sub && echo one > /d/a && echo two > /d/sub/b",
    )
    assert made.returncode == 0, made.stderr
    copied = await cluster.cli("cp", "shell:/d", str(tmp_path / "d"))
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "d" / "a").read_text() == "one\n"
    assert (tmp_path / "d" / "sub" / "b").read_text() == "two\n"
    (tmp_path / "up.txt").write_text("uploaded\n")
    sent = await cluster.cli("cp", str(tmp_path / "up.txt"), "shell:/tmp/up.txt")
    assert sent.returncode == 0, sent.stderr
    read = await cluster.cli("exec", "shell", "--", "cat", "/tmp/up.txt")
    assert read.stdout == "uploaded\n", read.stderr
    evil = await cluster.cli(
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "mkdir -p /e && echo x > /e/ok && ln -s /etc/passwd /e/evil",
    )
    assert evil.returncode == 0, evil.stderr
    refused = await cluster.cli("cp", "shell:/e", str(tmp_path / "e"))
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "evil" in refused.stderr, refused.stderr
    assert not (tmp_path / "e").exists(), "a refused copy wrote files"

    # Bad input: one line each.
    for args, words in (
        (("exec", "nope", "--", "true"), 'pods "nope" not found'),
        (("exec", "web", "-c", "nope", "--", "true"), "container nope is not valid for pod web"),
        (("exec", "broken", "--", "true"), 'container "main" in pod "broken" is not running'),
        (("port-forward", "pod/web", "0:9999"), "9999"),
    ):
        got = await cluster.cli(*args)
        assert got.returncode == 1, (args, got.stdout, got.stderr)
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (
            args,
            lines,
        )

    # port-forward: 100 requests at once, then the pod goes.
    forward = await asyncio.create_subprocess_exec(
        *_cli(cluster, "port-forward", "pod/web", "0:http"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert forward.stdout is not None and forward.stderr is not None
        line = (await asyncio.wait_for(forward.stdout.readline(), 30)).decode()
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        port = int(line.split(":")[1].split()[0])
        answers = await asyncio.gather(*(_get(port) for _ in range(100)))
        assert all(a == PAGE for a in answers), {a for a in answers if a != PAGE}
        async with cluster.client() as client:
            await client.delete(Kind.POD, "web")
        await asyncio.wait_for(forward.wait(), 30)
        said = (await forward.stderr.read()).decode().strip()
        assert forward.returncode == 1
        assert said.startswith('error: lost connection to pod "web"'), said
    finally:
        if forward.returncode is None:
            forward.kill()
            await forward.wait()


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
    return body

"""What the secure-join e2e tests share: `JoiningAgent`, `pilothouse agent …` (fake runtime)
started on a node host or on this machine with the words a join line gives it, and the
`agents` fixture that stops every one a test started (registered in tests/e2e/conftest.py);
the CLI with the control plane's admin config (`cli`), the join line's words (`join_words`,
`flag`), and every guarded RPC called raw (`every_method`, `call`, `refusal`).

Invariant: every agent the `agents` fixture holds is killed (process group) and its state
removed when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nodeagent import join
from pilothouse.cli.cluster.netns import NodeHost
from pilothouse.v1 import controlplane_pb2
from tests.fixtures.controlplane import ControlPlaneProcess

REPO = Path(__file__).resolve().parents[2]

WAIT = 30.0


class JoiningAgent:
    """`pilothouse agent …` (fake runtime) started on a node host, or on this machine."""

    def __init__(self, name: str, words: list[str], *, host: NodeHost | None = None) -> None:
        self.name = name
        self.host = host
        self.state = Path(tempfile.mkdtemp(prefix="ph-join-"))
        self.words = words  # --server … [--token TOKEN (piped in) --ca-cert-hash …]
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, words: list[str] | None = None) -> None:
        """Start the agent with `words`; a `--token TOKEN` pair among them is given as the
        printed join line gives it: `--token -` on the command line, TOKEN on standard input
        (a token value on the command line is refused, every user could read it there)."""
        listen = f"{self.host.address}:0" if self.host else "127.0.0.1:0"
        node_ip = self.host.address if self.host else "127.0.0.1"
        flags = list(self.words if words is None else words)
        token = None
        if "--token" in flags and flags[flags.index("--token") + 1] != "-":
            token = flags[flags.index("--token") + 1]
            flags[flags.index("--token") + 1] = "-"
        argv = [
            sys.executable, "-m", "pilothouse.cli.main", "agent", "--name", self.name,
            "--listen", listen, "--node-ip", node_ip, "--state-dir", str(self.state),
            "--runtime", "fake", *flags,
        ]  # fmt: skip
        (self.state / "agent.addr").unlink(missing_ok=True)
        with (self.state / "agent.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.host.command(argv) if self.host else argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL if token is None else subprocess.PIPE,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if token is not None:
            assert self.process.stdin is not None
            self.process.stdin.write(token.encode() + b"\n")
            self.process.stdin.close()

    def wait_serving(self) -> None:
        assert self.process is not None
        addr = self.state / "agent.addr"
        deadline = time.monotonic() + WAIT
        while not (addr.exists() and addr.read_text().endswith("\n")):
            assert self.process.poll() is None, f"agent {self.name} exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"agent {self.name} never served:\n{self.log()}"
            time.sleep(0.05)
        self.address = addr.read_text().strip()

    def wait_exit(self) -> int:
        assert self.process is not None
        try:
            return self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"agent {self.name} kept running after a refused join:\n{self.log()}")

    def errors(self) -> list[str]:
        """The `error: …` lines the agent printed (its one-line verdict)."""
        return [line for line in self.log().splitlines() if line.startswith("error: ")]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def credentials(self) -> join.NodeCredentials:
        found = join.NodeCredentials.load(self.state / "pki")
        assert found is not None, f"agent {self.name} kept no credentials:\n{self.log()}"
        return found

    def log(self) -> str:
        path = self.state / "agent.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


@pytest.fixture
def agents() -> Iterator[list[JoiningAgent]]:
    """Every agent a test starts; all killed (process group) and their state removed."""
    made: list[JoiningAgent] = []
    try:
        yield made
    finally:
        for agent in made:
            agent.stop()
            subprocess.run(["rm", "-rf", str(agent.state)], check=False)


def cli(plane: ControlPlaneProcess, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`pilothouse ARGV…` with the admin config the control plane wrote (PILOTHOUSE_CONFIG)."""
    env = plane.cli_env({**os.environ, "HOME": str(home)})
    env.pop("PILOTHOUSE_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=WAIT,
        check=False,
    )


def join_words(plane: ControlPlaneProcess, home: Path, *create_flags: str) -> list[str]:
    """The agent flags of `pilothouse token create --print-join-command`'s line
    (`echo TOKEN | pilothouse agent … --token -`), with the piped token as `--token TOKEN`
    (`JoiningAgent.start` pipes it in again)."""
    printed = cli(plane, home, "token", "create", "--print-join-command", *create_flags)
    assert printed.returncode == 0, f"token create failed: {printed.stderr}"
    piped, bar, command = printed.stdout.strip().partition(" | ")
    echoed = shlex.split(piped)
    assert bar and echoed[0] == "echo" and len(echoed) == 2, (
        f"not `echo TOKEN | …`: {printed.stdout!r}"
    )
    words = shlex.split(command)
    assert words[:2] == ["pilothouse", "agent"], f"not an agent command: {printed.stdout!r}"
    words = words[2:]
    assert words[words.index("--token") + 1] == "-", f"the token is not piped: {printed.stdout!r}"
    words[words.index("--token") + 1] = echoed[1]
    return words


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


async def until(check, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {WAIT:.0f} s")
        await asyncio.sleep(0.2)


def every_method() -> list[tuple[str, bool, type]]:
    """(full method name, server streaming, request class) of every guarded service."""
    methods = []
    for service in ("ControlPlane", "NodeRegistry", "Tokens"):
        for method in controlplane_pb2.DESCRIPTOR.services_by_name[service].methods:
            request = getattr(controlplane_pb2, method.input_type.name)
            methods.append(
                (f"/pilothouse.v1.{service}/{method.name}", method.server_streaming, request)
            )
    return methods


async def call(channel: grpc.aio.Channel, method: str, streaming: bool, request: object) -> None:
    serialize = type(request).SerializeToString  # type: ignore[attr-defined]
    if streaming:
        stream = channel.unary_stream(method, request_serializer=serialize)(request, timeout=10)
        async for _ in stream:
            break
    else:
        await channel.unary_unary(method, request_serializer=serialize)(request, timeout=10)


async def refusal(coroutine) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        await coroutine
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK

"""`pilothouse …` run as a person runs it, for the in-process CLI tests: `Cli(address)` calls
`main()` in a worker thread (the CLI runs its own event loop) with `--server address`, and
answers (exit code, stdout, stderr); `start()` runs a command in the background so its output
can be read while it runs (`tty=True`: stdout is a terminal). The `pilothouse` fixture points
one at the in-process control plane (`memory_control_plane`).

Invariant: sys.stdin is swapped only inside the worker thread's call, and put back after it.
"""

from __future__ import annotations

import asyncio
import io
import sys

import pytest

from pilothouse.cli import main as cli


class Terminal(io.StringIO):
    """A stdout that says it is a terminal (status redraws one line)."""

    def isatty(self) -> bool:
        return True


class Cli:
    def __init__(self, address: str) -> None:
        self.address = address

    def start(
        self, *argv: str, tty: bool = False, stdin: str | None = None
    ) -> tuple[asyncio.Task[int], io.StringIO]:
        """Run a command in the background; its stdout can be read while it runs (its stderr
        is `self.err` until the next command starts)."""
        out, err = (Terminal() if tty else io.StringIO()), io.StringIO()
        self.err = err

        def call() -> int:
            saved = sys.stdin
            if stdin is not None:
                sys.stdin = io.StringIO(stdin)
            try:
                return cli.main([*argv, "--server", self.address], out=out, err=err)
            finally:
                sys.stdin = saved

        return asyncio.create_task(asyncio.to_thread(call)), out

    async def __call__(
        self, *argv: str, tty: bool = False, stdin: str | None = None
    ) -> tuple[int, str, str]:
        task, out = self.start(*argv, tty=tty, stdin=stdin)
        err = self.err
        code = await task
        return code, out.getvalue(), err.getvalue()

    async def describe(self, kind: str, name: str, *expected: str) -> str:
        """`describe KIND NAME`: it succeeds and its page holds every one of `expected`."""
        code, out, err = await self("describe", kind, name)
        assert code == 0, err
        for line in expected:
            assert line in out, f"describe {kind} lacks {line!r}:\n{out}"
        return out


@pytest.fixture
def pilothouse(memory_control_plane: object) -> Cli:
    return Cli(memory_control_plane.address)  # type: ignore[attr-defined]

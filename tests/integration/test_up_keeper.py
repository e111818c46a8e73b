"""The `up` supervisor's hand-over to the small keeper process, with plain `sleep` children:
after the exec (same pid) the keeper restarts a killed child, and SIGTERM ends every child
and the process (through `finish`, as `down` does); the keeper loads no gRPC, PKI or TLS.

Every test ends every process it made, also when it fails (the pid files, then the process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.cli.cluster import processes
from pilothouse.cli.cluster.layout import Layout
from tests.unit.waiting import eventually

# A stand-in for `up`: two children under the real Supervisor, then the real hand-over.
UP = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from pilothouse.cli.cluster import keeper, processes
    from pilothouse.cli.cluster.layout import Layout
    from pilothouse.cli.cluster.supervisor import ChildSpec, Supervisor

    async def main() -> None:
        layout = Layout.at(Path(sys.argv[1]))
        layout.data_dir.mkdir(parents=True, exist_ok=True)
        processes.write(layout.up_pid, __import__("os").getpid())
        supervisor = Supervisor(layout.pids)
        for name in ("one", "two"):
            await supervisor.start(
                ChildSpec(name=name, argv=("sleep", "300"), log_path=layout.log(name))
            )
        await keeper.hand_over(
            layout.keeper_file, supervisor, data_dir=layout.data_dir, stop=asyncio.Event()
        )
        raise SystemExit("the hand-over returned")

    asyncio.run(main())
    """
)


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Layout]]:
    layout = Layout.at(tmp_path / "cluster")
    process = subprocess.Popen(
        [sys.executable, "-c", UP, str(layout.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, layout
    finally:
        records = [processes.read(p) for p in layout.pids.glob("*.pid")]
        processes.end([r for r in records if r is not None], timeout=2)
        if process.poll() is None:
            process.kill()
        process.wait()


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _child(layout: Layout, name: str) -> processes.ProcessRecord | None:
    return processes.read(layout.pids / f"{name}.pid")


async def test_the_keeper_restarts_a_killed_child_and_stops_all_on_sigterm(
    kept: tuple[subprocess.Popen[str], Layout],
) -> None:
    process, layout = kept

    async def keeping() -> bool:
        return "pilothouse.cli.cluster.keeper" in _cmdline(process.pid)

    await eventually(keeping, what="the process became the keeper", within=60)
    state = json.loads(layout.keeper_file.read_text())
    assert [c["name"] for c in state["children"]] == ["one", "two"]
    loaded = _maps(process.pid)
    for library in ("cygrpc", "libssl", "_rust.abi3"):  # gRPC, TLS, cryptography
        assert library not in loaded, f"the keeper maps {library}"

    old = _child(layout, "one")
    assert old is not None and old.alive()
    os.kill(old.pid, signal.SIGKILL)

    async def restarted() -> bool:
        new = _child(layout, "one")
        return new is not None and new.pid != old.pid and new.alive()

    await eventually(restarted, what="the keeper started child one again", within=30)
    children = [_child(layout, n) for n in ("one", "two")]
    assert all(c is not None and c.alive() for c in children)

    process.send_signal(signal.SIGTERM)

    async def ended() -> bool:
        return process.poll() is not None

    await eventually(ended, what="SIGTERM ended the keeper", within=60)
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    assert not any(c is not None and c.alive() for c in children), "children survive SIGTERM"
    assert not layout.keeper_file.exists(), "the keeper's state survives the stop"
    assert not layout.up_pid.exists()

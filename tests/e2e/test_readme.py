"""The README's walkthrough runs as written on the quickstart's cluster (as root).

A newcomer copies the "Using it" block line by line: every command there must succeed as typed,
against the cluster `up` makes (three agents in network namespaces, mutual TLS, the local
registry with `busybox:stable` and `busybox:latest`). The test reads the block from README.md
itself, so a command edited there is the command tested; only `--data-dir` is added to `up` and
`down`, so the test's cluster is its own. A `curl` line reaches a NodePort from this machine: it
runs as written, with the README's node-1 address replaced by the one this cluster's node-1
has (another cluster on the machine may hold the default subnet), and is retried for a few
seconds (the Service's endpoints follow the rollout the line before by a moment).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.network import missing_support
from tests.fixtures.cluster import PILOTHOUSE, LocalClusterRun

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def walkthrough() -> list[list[str]]:
    """The commands of the README's "Using it" block, comments dropped, as argument lists."""
    text = README.read_text()
    section = text.split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "README.md has no ```sh block under '## Using it'"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


@pytest.fixture
def cluster(local_cluster: LocalClusterRun) -> Iterator[LocalClusterRun]:
    if reason := missing_support():
        pytest.skip(reason)
    yield local_cluster


README_NODE_1 = "172.30.0.11"


def run(cluster: LocalClusterRun, words: list[str]) -> subprocess.CompletedProcess[str]:
    if words[0] == "curl":
        return curl(cluster, words)
    assert words[0] == "pilothouse", f"the walkthrough runs only pilothouse and curl, not {words}"
    verb = words[1]
    if verb in ("up", "down"):
        return cluster.run(*words[1:])
    return subprocess.run(
        [*PILOTHOUSE, *words[1:]],
        env=cluster.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def curl(cluster: LocalClusterRun, words: list[str]) -> subprocess.CompletedProcess[str]:
    node_1 = cluster.nodes()["node-1"].rpartition(":")[0]
    argv = [w.replace(README_NODE_1, node_1) for w in words]
    done = subprocess.CompletedProcess(argv, 1, "", "")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            break
        time.sleep(0.5)
    return done


def test_every_command_of_the_walkthrough_runs_as_written(cluster: LocalClusterRun) -> None:
    commands = walkthrough()
    assert commands[0][:2] == ["pilothouse", "up"] and commands[-1] == ["pilothouse", "down"]
    seen: dict[str, str] = {}
    for words in commands:
        done = run(cluster, words)
        typed = " ".join(words)
        assert done.returncode == 0, (
            f"`{typed}` from the README failed (exit {done.returncode}):\n"
            f"{done.stdout}\n{done.stderr}"
        )
        seen[typed] = done.stdout
    logs = next(out for typed, out in seen.items() if typed.startswith("pilothouse logs"))
    assert "serving /www on :8080" in logs, f"`logs` showed no output of the web server: {logs!r}"
    history = next(out for typed, out in seen.items() if "rollout history" in typed)
    assert "busybox:latest" in history and "busybox:stable" in history, history
    page = next(out for typed, out in seen.items() if typed.startswith("curl"))
    assert page.startswith("hello from web-"), f"curl through the Service got {page!r}"
    status = next(out for typed, out in seen.items() if "rollout status" in typed)
    assert "successfully rolled out" in status, status
    assert cluster.running_processes() == [], "`pilothouse down` left processes behind"

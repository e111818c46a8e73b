"""Secrets on the node's disk (issue 11): nothing under the agent's state dir that holds a pod's
secret is readable by another local user.

A pod's env value (what a Secret's env will carry) ends up in the desired set
(`desired.json`), in its container's OCI bundle (`config.json`) and, when the container prints
it, in its log. The state dir is made as an older agent or `mkdir` would leave it (0755), then
the agent runs a pod that prints its secret; `nobody` (uid 65534) walking the whole tree with
grep finds nothing, and every file holding the secret is 0600 or sits in a 0700 directory.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest

from pilothouse.v1 import agent_pb2, agent_pb2_grpc
from tests.integration.test_agent import _missing, make_pod, wait_for
from tests.integration.test_probes import RuncAgent, clean_up

pytestmark = [pytest.mark.root, pytest.mark.slow]

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


async def test_no_file_holding_a_pods_secret_is_readable_by_nobody() -> None:
    if reason := _missing():
        pytest.skip(reason)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed (util-linux)")
    from pilothouse.oci.testimage import build_test_image

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    state = _state_dir()
    build_test_image(state / "images" / "import" / "busybox.tar")
    agent = RuncAgent(state, f"/pilothouse-files-test-{uuid.uuid4().hex[:8]}", ())
    try:
        pod = make_pod("vault", 'echo "token=$DB_PASSWORD"; exec sleep 3600')
        pod.spec.containers[0].env.add(name="DB_PASSWORD", value=secret)
        async with grpc.aio.insecure_channel(agent.address) as channel:
            stub = agent_pb2_grpc.NodeAgentStub(channel)
            await stub.SyncPods(agent_pb2.SyncPodsRequest(pods=[pod]))
            await wait_for(
                stub,
                "running",
                lambda s: (
                    s.get("vault") is not None
                    and s["vault"].status.container_statuses[0].state.HasField("running")
                ),
            )
        _assert_private(state, secret)
    finally:
        await clean_up(agent)


def _state_dir() -> Path:
    """A short state dir (conmon's socket paths) left 0755, as `mkdir` or an older agent would."""
    state = Path(tempfile.mkdtemp(prefix="ph-fs-"))
    state.chmod(0o755)
    return state


def _assert_private(state: Path, secret: str) -> None:
    holders = _files_holding(state, secret, wait_for=("config.json", "0.log"))
    seen_by_nobody = subprocess.run(
        [*NOBODY, "grep", "-rls", secret, str(state)], capture_output=True, text=True
    ).stdout.split()
    assert seen_by_nobody == [], f"nobody can read the pod's secret in: {seen_by_nobody}"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, "the state dir is not root's only"
    for path in holders:
        mode = stat.S_IMODE(path.stat().st_mode)
        parent = stat.S_IMODE(path.parent.stat().st_mode)
        assert mode & 0o077 == 0 or parent & 0o077 == 0, (
            f"{path.relative_to(state)} ({oct(mode)} in a {oct(parent)} directory) holds "
            "the secret and only the state dir's mode keeps others out"
        )


def _files_holding(state: Path, secret: str, *, wait_for: tuple[str, ...]) -> list[Path]:
    """Every file under `state` holding `secret` (as root), once those named `wait_for` do."""
    import time

    deadline = time.monotonic() + 30
    while True:
        found = subprocess.run(
            ["grep", "-rls", secret, str(state)], capture_output=True, text=True
        ).stdout.split()
        names = {Path(f).name for f in found}
        if all(n in names for n in wait_for) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"desired.json", *wait_for} <= names, f"the secret was expected in more files: {found}"
    return [Path(f) for f in found]

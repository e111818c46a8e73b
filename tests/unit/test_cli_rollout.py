"""`pilothouse rollout …`, `set image` and `diff` as a person runs them, against the real API
servicers, the deployment controller and a hollow agent over one in-memory store.

Each command runs through `main()` in a worker thread (the CLI runs its own event loop) while
the control loops run in the test's loop; the tests check what a person reads and the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.api.server import ApiServer
from controlplane.objects import ObjectStore
from controlplane.reconcile.clock import ManualClock
from controlplane.store.memory import MemoryStore
from pilothouse.cli import main as cli
from pilothouse.cli import rollout
from pilothouse.cli.resources import UsageError
from pilothouse.cli.rollout.verbs import bar, parse_duration
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests.unit.rollout_support import (
    CRASHING,
    D,
    Plane,
    eventually,
    make_deployment,
)

WAITING = 'Waiting for deployment "web" rollout to finish: '
DONE = 'deployment "web" successfully rolled out'

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: web:v1
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Cli:
    def __init__(self, address: str) -> None:
        self.address = address

    def start(self, *argv: str, tty: bool = False) -> tuple[asyncio.Task[int], io.StringIO]:
        """Run a command in the background; its stdout can be read while it runs."""
        out, err = (Terminal() if tty else io.StringIO()), io.StringIO()
        self.err = err
        task = asyncio.create_task(
            asyncio.to_thread(cli.main, [*argv, "--server", self.address], out=out, err=err)
        )
        return task, out

    async def __call__(self, *argv: str, tty: bool = False) -> tuple[int, str, str]:
        task, out = self.start(*argv, tty=tty)
        err = self.err
        code = await task
        return code, out.getvalue(), err.getvalue()


@contextlib.asynccontextmanager
async def running(clock: ManualClock | None = None) -> AsyncIterator[tuple[Plane, Cli]]:
    store = MemoryStore()
    objects = ObjectStore(store, clock=clock.now) if clock else ObjectStore(store)
    api = ApiServer(objects=objects, listen="127.0.0.1:0")
    address = await api.start()
    try:
        async with Plane(store, clock=clock) as plane:
            yield plane, Cli(address)
    finally:
        await api.stop()
        await store.close()


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Plane, Cli]]:
    async with running() as rig:
        yield rig


async def create(pilothouse: Cli, deployment: objects_pb2.Deployment) -> None:
    """Through the API, as a person's apply goes: defaults included, as later writes get them."""
    async with Client(pilothouse.address) as client:
        await client.apply(deployment)


async def rolled_out_web(plane: Plane, pilothouse: Cli, replicas: int = 3) -> None:
    await create(pilothouse, make_deployment(replicas=replicas))
    await plane.rolled_out(replicas, "web:v1", "the first rollout never completed")


# ------------------------------------------------------------------------------- parsing


def test_timeouts_read_as_kubectl_durations() -> None:
    assert [parse_duration(t) for t in ("30s", "1h30m", "500ms", "2m", "0", "1.5")] == [
        30,
        5400,
        0.5,
        120,
        0,
        1.5,
    ]
    for bad in ("soon", "5x", "-1s", ""):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_the_bar_shows_available_ready_and_updated_out_of_desired() -> None:
    status = rollout.RolloutStatus("", False, desired=4, updated=4, ready=2, available=1)
    assert bar(status) == "[#####=====----------]"
    nothing = rollout.RolloutStatus("", False, desired=3, updated=0, ready=0, available=0)
    assert bar(nothing) == "[" + "." * 20 + "]"
    scaled_to_zero = rollout.RolloutStatus("", True, desired=0, updated=0, ready=0, available=0)
    assert bar(scaled_to_zero) == "[" + "#" * 20 + "]"


async def test_verbs_name_one_deployment_in_either_form(cluster: tuple[Plane, Cli]) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse)
    for words in (["deployment/web"], ["deploy", "web"], ["deployments.apps/web"]):
        assert await pilothouse("rollout", "status", *words) == (0, DONE + "\n", "")
    code, out, err = await pilothouse("rollout", "status", "pod/web")
    assert (code, out) == (2, "") and "works on deployments, not pods" in err, err
    code, _, err = await pilothouse("rollout", "undo", "deploy/web", "deploy/api")
    assert code == 2 and "exactly one object" in err, err
    code, _, err = await pilothouse("rollout", "history", "deploy/missing")
    assert (code, err) == (1, 'error: deployments "missing" not found\n')
    code, _, err = await pilothouse("rollout", "status", "deploy/web", "--timeout", "soon")
    assert code == 2 and "--timeout 'soon' is not a duration" in err, err


# -------------------------------------------------------------------------------- status


async def test_status_follows_a_stalled_rollout_until_the_timeout(
    cluster: tuple[Plane, Cli],
) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse)
    assert await pilothouse("set", "image", "deploy/web", f"main={CRASHING}") == (
        0,
        "deployment.apps/web image updated\n",
        "",
    )
    stalled = f"{WAITING}1 out of 3 new replicas have been updated..."

    async def stalled_at_one() -> object:
        code, out, _ = await pilothouse("rollout", "status", "deploy/web", "-w=false")
        return (code, out) == (0, stalled + "\n") or out

    await eventually(stalled_at_one, "the crashing rollout never stalled at 1 updated replica")
    code, out, err = await pilothouse("rollout", "status", "-w", "deploy", "web", "--timeout=300ms")
    assert (code, err) == (1, "error: timed out waiting for the condition\n"), (code, out, err)
    assert out == stalled + "\n", "status should print kubectl's line once, as it stays the same"
    code, _, err = await pilothouse("rollout", "status", "deploy/web", "--revision", "1")
    assert (code, err) == (
        1,
        "error: desired revision (1) is different from the running revision (2)\n",
    )


async def test_status_prints_progress_then_success(cluster: tuple[Plane, Cli]) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse)
    plane.agent.crashing.add("web:v2")  # hold the new pods back until the status is watched
    await pilothouse("set", "image", "deploy/web", "main=web:v2")
    task, out = pilothouse.start("rollout", "status", "deployment/web", "--timeout", "20s")
    await eventually(lambda: WAITING in out.getvalue() or out.getvalue(), "no progress shown")
    plane.agent.crashing.discard("web:v2")
    # Pods already running but not Ready stay so: replace them by deleting them.
    for pod in await plane.pods():
        if not any(c.type == "Ready" for c in pod.status.conditions):
            await plane.objects.delete(Kind.POD, "default", pod.metadata.name)
    code = await task
    lines = out.getvalue().splitlines()
    assert code == 0 and lines[-1] == DONE, (code, lines, pilothouse.err.getvalue())
    assert all(line.startswith(WAITING) for line in lines[:-1]), lines
    repeated = [a for a, b in itertools.pairwise(lines) if a == b]
    assert not repeated, f"a status line was printed twice in a row: {lines}"


async def test_status_on_a_terminal_redraws_one_bar(
    cluster: tuple[Plane, Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse)
    code, out, _ = await pilothouse("rollout", "status", "deploy/web", tty=True)
    assert (code, out) == (0, DONE + "\n"), "a finished rollout needs no bar"
    await pilothouse("set", "image", "deploy/web", f"main={CRASHING}")
    code, out, err = await pilothouse(
        "rollout", "status", "deploy/web", "--timeout", "300ms", tty=True
    )
    assert (code, err) == (1, "error: timed out waiting for the condition\n")
    assert out.startswith("\r\x1b[2Kweb [") and out.endswith("\n"), repr(out)
    assert out.count("\n") == 1, f"the bar should redraw one line, not add lines: {out!r}"
    last = out.rpartition("\r\x1b[2K")[2]
    assert "1/3 updated, 3/3 ready, 3/3 available" in last, repr(last)
    assert "1 out of 3 new replicas have been updated..." in last, repr(last)


async def test_status_fails_when_the_progress_deadline_passes() -> None:
    clock = ManualClock()
    async with running(clock) as (plane, pilothouse):
        await create(pilothouse, make_deployment(replicas=2, deadline=10))
        await plane.rolled_out(2, "web:v1", "the first rollout never completed")
        await pilothouse("set", "image", "deploy/web", f"main={CRASHING}")
        task, out = pilothouse.start("rollout", "status", "deploy/web", "--timeout", "20s")
        await eventually(lambda: WAITING in out.getvalue() or out.getvalue(), "no progress")
        await clock.advance(11)
        code = await task
        assert (code, pilothouse.err.getvalue()) == (
            1,
            'error: deployment "web" exceeded its progress deadline\n',
        ), out.getvalue()
        assert out.getvalue().startswith(WAITING)


# ------------------------------------------------------------------------- history, undo


async def test_set_image_history_and_undo(cluster: tuple[Plane, Cli]) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse, 2)
    code, out, err = await pilothouse("set", "image", "deployment", "web", "main=web:v2")
    assert (code, out, err) == (0, "deployment.apps/web image updated\n", "")
    await plane.rolled_out(2, "web:v2", "set image never rolled out")

    code, out, err = await pilothouse("rollout", "history", "deployment/web")
    lines = out.splitlines()
    assert (code, err) == (0, ""), err
    assert lines[:2] == ["deployment.apps/web", ""], lines
    assert lines[2].split() == ["REVISION", "CHANGE-CAUSE", "IMAGES"], lines
    assert [line.split()[:3] for line in lines[3:]] == [
        ["1", "<none>", f"main=web@{D[1]}"],
        ["2", "<none>", f"main=web@{D[2]}"],
    ], "history should list both revisions with the digests they run"
    assert "(web:v1)" in lines[3] and "(web:v2)" in lines[4], "the tags as written are missing"

    code, out, _ = await pilothouse("rollout", "history", "deploy", "web", "--revision", "1")
    assert code == 0 and out.startswith("deployment.apps/web with revision #1\nPod Template:\n")
    assert f"image: web@{D[1]}" in out and "web:v1" in out, out
    code, _, err = await pilothouse("rollout", "history", "deploy/web", "--revision=9")
    assert (code, err) == (1, "error: unable to find the specified revision 9\n")

    code, out, err = await pilothouse("rollout", "undo", "deploy/web", "--to-revision", "7")
    assert (code, out) == (1, "") and "unable to find specified revision 7" in err, err
    assert await pilothouse("rollout", "undo", "deploy/web") == (
        0,
        "deployment.apps/web rolled back\n",
        "",
    )
    await plane.rolled_out(2, "web:v1", "undo never brought web:v1 back")
    images = {p.spec.containers[0].image for p in await plane.pods()}
    assert images == {f"web@{D[1]}"}, "undo did not run revision 1's digest"
    code, out, _ = await pilothouse("rollout", "history", "deploy/web")
    rows = [line.split()[:3] for line in out.splitlines()[3:]]
    assert rows == [["2", "<none>", f"main=web@{D[2]}"], ["3", "<none>", f"main=web@{D[1]}"]], (
        "after undo, revision 1 should come back as revision 3"
    )
    code, out, _ = await pilothouse("rollout", "undo", "deploy/web", "--to-revision=3")
    assert (code, out) == (
        0,
        "deployment.apps/web skipped rollback (current template already matches revision 3)\n",
    )


async def test_history_of_a_deployment_without_revisions(cluster: tuple[Plane, Cli]) -> None:
    _plane, pilothouse = cluster
    paused = make_deployment(replicas=1)
    paused.spec.paused = True  # a paused Deployment makes no revision
    await create(pilothouse, paused)
    assert await pilothouse("rollout", "history", "deploy/web") == (
        0,
        "No rollout history found.\n",
        "",
    )
    code, _, err = await pilothouse("rollout", "undo", "deploy/web")
    assert code == 1 and "cannot rollback a paused deployment" in err, err


# ------------------------------------------------------------------ pause, resume, restart


async def test_pause_resume_and_restart(cluster: tuple[Plane, Cli]) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse, 2)
    assert await pilothouse("rollout", "pause", "deploy/web") == (
        0,
        "deployment.apps/web paused\n",
        "",
    )
    assert await pilothouse("rollout", "pause", "deploy", "web") == (
        1,
        "",
        'error: deployments.apps "web" is already paused\n',
    )
    code, _, err = await pilothouse("rollout", "restart", "deploy/web")
    assert (code, err) == (1, "error: can't restart paused deployment (run rollout resume first)\n")
    await pilothouse("set", "image", "deploy/web", "main=web:v2")
    assert len(await plane.replicasets()) == 1, "a paused Deployment rolled out"
    assert await pilothouse("rollout", "resume", "deploy/web") == (
        0,
        "deployment.apps/web resumed\n",
        "",
    )
    code, _, err = await pilothouse("rollout", "resume", "deploy/web")
    assert (code, err) == (1, 'error: deployments.apps "web" is not paused\n')
    await plane.rolled_out(2, "web:v2", "resume did not roll out the new image")

    before = {p.metadata.name for p in await plane.pods()}
    assert await pilothouse("rollout", "restart", "deployment/web") == (
        0,
        "deployment.apps/web restarted\n",
        "",
    )

    async def replaced() -> object:
        pods = await plane.pods()
        ready = all(any(c.type == "Ready" for c in p.status.conditions) for p in pods)
        names = {p.metadata.name for p in pods}
        return (len(pods) == 2 and ready and not names & before) or sorted(names)

    await eventually(replaced, "restart did not replace the pods")
    d = await plane.deployment()
    assert rollout.RESTARTED_AT in d.spec.template.metadata.annotations


async def test_set_image_refuses_what_it_cannot_do(cluster: tuple[Plane, Cli]) -> None:
    plane, pilothouse = cluster
    await rolled_out_web(plane, pilothouse, 1)
    code, out, err = await pilothouse("set", "image", "deploy/web", "nope=web:v2")
    assert (code, out, err) == (1, "", 'error: unable to find container named "nope"\n')
    code, _, err = await pilothouse("set", "image", "deploy/web")
    assert code == 2 and "at least one CONTAINER=IMAGE" in err, err
    code, _, err = await pilothouse("set", "image", "deploy/web", "main=")
    assert code == 1 and "is not CONTAINER=IMAGE" in err, err
    code, _, err = await pilothouse("set", "image", "pod/web-1", "main=web:v2")
    assert code == 2 and "works on deployments" in err, err
    assert (await plane.deployment()).spec.template.spec.containers[0].image == "web:v1", (
        "a refused set image changed the Deployment"
    )
    code, _, err = await pilothouse("set", "image", "deploy/web", "*=web:v3")
    assert code == 0, err
    assert (await plane.deployment()).spec.template.spec.containers[0].image == "web:v3"


# ---------------------------------------------------------------------------------- diff


async def test_diff_exit_codes_and_output(cluster: tuple[Plane, Cli], tmp_path: Path) -> None:
    plane, pilothouse = cluster
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    code, out, err = await pilothouse("diff", "-f", str(manifest))
    assert (code, err) == (1, ""), "a Deployment that does not exist yet is a difference"
    assert "+++ merged/deployments/web" in out and "+  name: web" in out, out

    assert (await pilothouse("apply", "-f", str(manifest)))[0] == 0
    await plane.rolled_out(2, "web:v1", "the applied manifest never rolled out")
    assert await pilothouse("diff", "-f", str(manifest)) == (0, "", ""), (
        "diff of the manifest just applied should show nothing (the controller's revision "
        "annotation is not a change the manifest makes)"
    )

    manifest.write_text(MANIFEST.replace("replicas: 2", "replicas: 5"))
    code, out, err = await pilothouse("diff", "-f", str(manifest))
    changed = [line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert (code, err) == (1, ""), err
    assert "-  replicas: 2" in changed and "+  replicas: 5" in changed, out
    assert out.startswith("--- live/deployments/web\n+++ merged/deployments/web\n"), out
    assert (await plane.deployment()).spec.replicas == 2, "diff changed the live Deployment"

    manifest.write_text(MANIFEST.replace("image: web:v1", "imagee: web:v1"))
    code, out, err = await pilothouse("diff", "-f", str(manifest))
    assert (code, out) == (2, ""), "an invalid manifest must not exit 0 or 1"
    assert "spec.template.spec.containers[0].imagee" in err, err
    code, out, err = await pilothouse("diff", "-f", str(tmp_path / "missing.yaml"))
    assert (code, out) == (2, "") and err.startswith("error: "), err


async def test_diff_of_an_unreachable_server_is_an_error(tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST)
    code, out, err = await Cli("127.0.0.1:1")("diff", "-f", str(manifest))
    assert (code, out) == (2, "") and err.startswith("error: "), err

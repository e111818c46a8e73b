"""`pilothouse rollout status` as a person runs it (and how every rollout verb names its
Deployment), against the real API servicers, the deployment controller and a hollow agent over
one in-memory store (tests.unit.cli_rollout_support).

Each command runs through `main()` in a worker thread (the CLI runs its own event loop) while
the control loops run in the test's loop; the tests check what a person reads and the exit code.
"""

from __future__ import annotations

import itertools

import pytest

from controlplane.reconcile.clock import ManualClock
from pilothouse.cli import rollout
from pilothouse.cli.resources import UsageError
from pilothouse.cli.rollout.verbs import bar, parse_duration
from pilothouse.kinds import Kind
from tests.unit import cli_rollout_support
from tests.unit.cli_rollout_support import (
    DONE,
    WAITING,
    create,
    rolled_out_web,
    running,
)
from tests.unit.cli_support import Cli
from tests.unit.rollout_support import (
    CRASHING,
    Plane,
    eventually,
    make_deployment,
)

cluster = cli_rollout_support.cluster  # the fixture, shared with the other rollout tests

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

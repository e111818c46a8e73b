"""`pilothouse rollout history|undo|pause|resume|restart`, `set image` and `diff` as a person
runs them, against the real API servicers, the deployment controller and a hollow agent over
one in-memory store (tests.unit.cli_rollout_support; `rollout status` is
test_cli_rollout_status).

Each command runs through `main()` in a worker thread (the CLI runs its own event loop) while
the control loops run in the test's loop; the tests check what a person reads and the exit code.
"""

from __future__ import annotations

from pathlib import Path

from pilothouse.cli import rollout
from tests.unit import cli_rollout_support
from tests.unit.cli_rollout_support import (
    MANIFEST,
    create,
    rolled_out_web,
)
from tests.unit.cli_support import Cli
from tests.unit.rollout_support import (
    D,
    Plane,
    eventually,
    make_deployment,
)

cluster = cli_rollout_support.cluster  # the fixture, shared with the other rollout tests

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

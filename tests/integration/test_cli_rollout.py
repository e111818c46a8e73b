"""`pilothouse set image`, `rollout history|undo|status` and `diff`, run as a person runs them
(subprocesses) against a real control plane with its embedded etcd and its deployment
controller. No node runs the pods: revisions and their history need none, and a rollout that
cannot finish shows `rollout status --timeout` failing as it should.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# deploy/examples/web.yaml's Deployment alone (the example also holds its Service).
WEB = REPO / "tests" / "data" / "manifests" / "web-deployment.yaml"
WAIT_SECONDS = 30.0


class Pilothouse:
    def __init__(self, plane: Any, home: Path, namespace: str) -> None:
        self.address = plane.address
        self.namespace = namespace
        env = {**os.environ, "HOME": str(home)}
        env.pop("PILOTHOUSE_SERVER", None)
        env.pop("PILOTHOUSE_CONFIG", None)
        self.env = plane.cli_env(env)  # the admin config (mutual TLS)

    def __call__(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pilothouse.cli.main", *argv]
        command += ["-n", self.namespace, "--server", self.address]
        return subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=60, check=False
        )


def until(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until it returns something true; fail saying what never happened."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {WAIT_SECONDS:.0f} s")
        time.sleep(0.1)


def history(pilothouse: Pilothouse) -> list[list[str]]:
    """The rows of `rollout history deploy/web`: revision, change cause, images."""
    shown = pilothouse("rollout", "history", "deploy/web")
    assert shown.returncode == 0, shown.stderr
    return [line.split() for line in shown.stdout.splitlines()[3:]]


def revisions(pilothouse: Pilothouse, numbers: list[str]) -> list[list[str]] | None:
    """The history rows once they are exactly these revisions."""
    rows = history(pilothouse)
    return rows if [row[0] for row in rows] == numbers else None


@pytest.fixture
def make(shared_control_plane: Any, tmp_path: Path) -> Iterator[Callable[[str], Pilothouse]]:
    made: list[Pilothouse] = []

    def cli(namespace: str) -> Pilothouse:
        made.append(Pilothouse(shared_control_plane, tmp_path / "home", namespace))
        # The API refuses objects in a namespace that does not exist, as Kubernetes does.
        created = made[-1]("create", "namespace", namespace)
        assert created.returncode == 0 or "already exists" in created.stderr, created.stderr
        return made[-1]

    yield cli
    for pilothouse in made:
        pilothouse("delete", "deploy", "web", "--ignore-not-found")


def test_set_image_history_undo_and_a_stalled_status(make: Callable[[str], Pilothouse]) -> None:
    pilothouse = make("rollout-cli")
    assert pilothouse("apply", "-f", str(WEB)).returncode == 0
    until(lambda: revisions(pilothouse, ["1"]), "the first revision was not recorded")

    updated = pilothouse("set", "image", "deployment/web", "httpd=busybox:v2")
    assert (updated.returncode, updated.stdout) == (0, "deployment.apps/web image updated\n"), (
        updated.stderr
    )
    rows = until(lambda: revisions(pilothouse, ["1", "2"]), "no revision 2 was recorded")
    assert rows == [
        ["1", "<none>", "httpd=busybox:stable"],
        ["2", "<none>", "httpd=busybox:v2"],
    ], "history should list the two revisions with their images"
    detail = pilothouse("rollout", "history", "deploy", "web", "--revision", "2")
    assert detail.returncode == 0 and "image: busybox:v2" in detail.stdout, detail

    # No node runs the pods, so the rollout cannot finish: --timeout ends the wait.
    status = pilothouse("rollout", "status", "deploy/web", "--timeout", "1s")
    assert (status.returncode, status.stderr) == (
        1,
        "error: timed out waiting for the condition\n",
    ), status
    assert status.stdout.startswith('Waiting for deployment "web" rollout to finish: '), status

    undone = pilothouse("rollout", "undo", "deploy/web")
    assert (undone.returncode, undone.stdout) == (0, "deployment.apps/web rolled back\n"), (
        undone.stderr
    )
    rows = until(
        lambda: revisions(pilothouse, ["2", "3"]),
        "after undo, revision 1 did not come back as revision 3",
    )
    assert rows == [
        ["2", "<none>", "httpd=busybox:v2"],
        ["3", "<none>", "httpd=busybox:stable"],
    ], "the rollback should run revision 1's image as revision 3"
    shown = pilothouse("get", "deploy", "web", "-o", "json")
    image = json.loads(shown.stdout)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "busybox:stable", "the Deployment does not run the rolled-back image"


def test_diff_exit_codes(make: Callable[[str], Pilothouse], tmp_path: Path) -> None:
    pilothouse = make("rollout-diff")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(WEB.read_text())
    new = pilothouse("diff", "-f", str(manifest))
    assert (new.returncode, new.stderr) == (1, ""), "a Deployment not yet created is a difference"
    assert "+  name: web" in new.stdout, new.stdout

    assert pilothouse("apply", "-f", str(manifest)).returncode == 0

    def annotated() -> bool:
        shown = pilothouse("get", "deploy", "web", "-o", "json")
        annotations = json.loads(shown.stdout)["metadata"].get("annotations", {})
        return "deployment.kubernetes.io/revision" in annotations

    until(annotated, "the deployment controller never gave the Deployment its revision")
    same = pilothouse("diff", "-f", str(manifest))
    assert (same.returncode, same.stdout, same.stderr) == (0, "", ""), (
        "diff of the manifest just applied should show nothing"
    )

    manifest.write_text(WEB.read_text().replace("replicas: 3", "replicas: 5"))
    changed = pilothouse("diff", "-f", str(manifest))
    assert changed.returncode == 1, changed.stderr
    assert "-  replicas: 3" in changed.stdout and "+  replicas: 5" in changed.stdout, changed
    shown = pilothouse("get", "deploy", "web", "-o", "json")
    assert json.loads(shown.stdout)["spec"]["replicas"] == 3, "diff changed the live Deployment"

    manifest.write_text(WEB.read_text().replace("replicas: 3", "replicas: -1"))
    broken = pilothouse("diff", "-f", str(manifest))
    assert (broken.returncode, broken.stdout) == (2, ""), "an error must not read as a diff"
    assert "spec.replicas" in broken.stderr, broken.stderr

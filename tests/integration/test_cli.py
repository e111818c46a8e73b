"""The `pilothouse` command, run as a person runs it, against a real control plane and etcd.

Applies deploy/examples/web.yaml, reads it back with `-o json` and compares it field by field
with the manifest plus Kubernetes' defaults (written out here, independently of our own
defaulting code), sees an update arrive on a running `get -w`, deletes it; and checks that a
bad manifest is refused with its field path and writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# deploy/examples/web.yaml's Deployment alone (the example also holds its Service).
WEB = REPO / "tests" / "data" / "manifests" / "web-deployment.yaml"
NAMESPACE = "cli-test"
WAIT_SECONDS = 30.0

# What Kubernetes adds to deploy/examples/web.yaml when it stores it (apps/v1 defaults).
KUBERNETES_DEFAULTS: dict[str, Any] = {
    "spec": {
        "progressDeadlineSeconds": 600,
        "revisionHistoryLimit": 10,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
        },
        "template": {
            "spec": {
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler",
                "containers": [
                    {
                        "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "ports": [{"protocol": "TCP"}],
                        "readinessProbe": {
                            "timeoutSeconds": 1,
                            "successThreshold": 1,
                            "failureThreshold": 3,
                            "httpGet": {"scheme": "HTTP"},
                        },
                        "livenessProbe": {
                            "timeoutSeconds": 1,
                            "successThreshold": 1,
                            "failureThreshold": 3,
                        },
                    }
                ],
            }
        },
    }
}


def merged(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(extra, list):
        return [merged(b, e) for b, e in zip(base, extra, strict=False)] + base[len(extra) :]
    return extra


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


class Pilothouse:
    """Runs the CLI as a subprocess against one control plane."""

    def __init__(self, plane: Any, home: Path) -> None:
        self.address = plane.address
        env = {**os.environ, "HOME": str(home)}
        env.pop("PILOTHOUSE_SERVER", None)
        env.pop("PILOTHOUSE_CONFIG", None)
        self.env = plane.cli_env(env)  # the admin config (mutual TLS), --server given too

    def command(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "pilothouse.cli.main", *argv, "--server", self.address]

    def __call__(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=WAIT_SECONDS,
            check=False,
        )

    @contextlib.contextmanager
    def streaming(self, *argv: str) -> Iterator[queue.Queue[str]]:
        """Run a long-lived command (`get -w`); yields a queue of its stdout lines."""
        process = subprocess.Popen(
            self.command(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            yield lines
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(5)


def next_line(lines: queue.Queue[str], what: str) -> str:
    try:
        return lines.get(timeout=WAIT_SECONDS)
    except queue.Empty:
        pytest.fail(f"`get -w` printed nothing for {WAIT_SECONDS:.0f} s while waiting for {what}")


@pytest.fixture
def pilothouse(shared_control_plane: Any, tmp_path: Path) -> Iterator[Pilothouse]:
    cli = Pilothouse(shared_control_plane, tmp_path / "home")
    cli("create", "namespace", NAMESPACE)  # objects go only into namespaces that exist
    yield cli
    cli("delete", "deploy", "web", "-n", NAMESPACE, "--ignore-not-found")


def test_apply_read_back_watch_and_delete_web_example(pilothouse: Pilothouse) -> None:
    applied = pilothouse("apply", "-f", str(WEB), "-n", NAMESPACE)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == "deployment.apps/web created\n"

    shown = pilothouse("get", "deployment", "web", "-n", NAMESPACE, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    manifest = yaml.safe_load(WEB.read_text())
    expected = merged(manifest, KUBERNETES_DEFAULTS)
    for path, want in leaves(expected["spec"], "spec"):
        got: Any = stored
        for part in path.replace("[", ".[").split("."):
            got = got[int(part[1:-1])] if part.startswith("[") else got.get(part)
            if got is None:
                break
        assert got == want, f"{path}: the manifest plus defaults say {want!r}, get shows {got!r}"
    unexpected = {p for p, _ in leaves(stored["spec"], "spec")} - {
        p for p, _ in leaves(expected["spec"], "spec")
    }
    assert not unexpected, f"get shows spec fields the manifest never set: {sorted(unexpected)}"
    meta = stored["metadata"]
    assert (stored["apiVersion"], stored["kind"]) == ("apps/v1", "Deployment")
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("web", NAMESPACE, {"app": "web"})
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z"), meta["creationTimestamp"]

    with pilothouse.streaming("get", "deploy", "-w", "-n", NAMESPACE) as lines:
        header = next_line(lines, "the table header")
        assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        first = next_line(lines, "the current row of web")
        assert first.split()[:2] == ["web", "0/3"], first
        changed = WEB.read_text().replace("replicas: 3", "replicas: 2")
        update = pilothouse("apply", "-f", "-", "-n", NAMESPACE, stdin=changed)
        assert update.stdout == "deployment.apps/web configured\n", update.stderr
        row = next_line(lines, "the update to 2 replicas")
        while row.split()[:2] != ["web", "0/2"]:
            row = next_line(lines, "the update to 2 replicas")
        assert header.index("READY") == row.index("0/2"), "watch rows are not aligned"

    deleted = pilothouse("delete", "-f", str(WEB), "-n", NAMESPACE)
    assert (deleted.returncode, deleted.stdout) == (0, 'deployment.apps "web" deleted\n')
    gone = pilothouse("get", "deploy", "web", "-n", NAMESPACE)
    assert gone.returncode == 1
    assert gone.stderr == 'error: deployments "web" not found\n'


def test_bad_manifest_is_refused_with_its_field_path_and_writes_nothing(
    pilothouse: Pilothouse, tmp_path: Path
) -> None:
    bad = WEB.read_text().replace(
        "image: busybox:stable", "image: busybox:stable\n          imagePullPolicyy: Always"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    refused = pilothouse("apply", "-f", str(path), "-n", NAMESPACE)
    assert refused.returncode != 0, "an invalid manifest was accepted"
    assert refused.stdout == ""
    assert "spec.template.spec.containers[0].imagePullPolicyy" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    gone = pilothouse("get", "deploy", "web", "-n", NAMESPACE)
    assert gone.returncode == 1 and "not found" in gone.stderr, "the invalid manifest was written"


def test_a_list_larger_than_grpcs_default_message_limit_is_printed(pilothouse: Pilothouse) -> None:
    """A List of a large cluster is one answer of many MiB (9,000 pods: 7.9 MiB): it must not
    fail with gRPC's default 4 MiB receive limit. Six ConfigMaps of 900 KiB make 5.3 MiB."""
    names = [f"big-{i}" for i in range(6)]
    for name in names:  # one file each: a manifest file may hold at most 3 MiB
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"blob": "x" * (900 * 1024)},
        }
        applied = pilothouse("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        assert applied.returncode == 0, applied.stderr
    try:
        listed = pilothouse("get", "configmaps", "-n", NAMESPACE, "-o", "json")
        assert listed.returncode == 0, listed.stderr[-2000:]
        items = json.loads(listed.stdout)["items"]
        assert (
            sorted(i["metadata"]["name"] for i in items if i["metadata"]["name"] in names) == names
        )
        assert all(
            len(i["data"]["blob"]) == 900 * 1024 for i in items if i["metadata"]["name"] in names
        )
    finally:
        pilothouse("delete", "configmap", *names, "-n", NAMESPACE, "--ignore-not-found")

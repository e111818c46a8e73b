"""ConfigMaps and Secrets through a whole cluster (issue 14): a control plane with embedded etcd
and one real-runc agent, driven by the API and the CLI as a user drives them.

What a user relies on:
- a Secret applied with stringData reaches the container as a file and an env var (the
  container proves it by printing a hash), `get secret -o yaml` shows its data base64-encoded
  as Kubernetes does, and its value is nowhere in etcd's data directory, in any log of the
  control plane or the agent, in any file the agent keeps, or in any event;
- `pilothouse secrets rotate-key` re-encrypts every Secret with a new key, which still opens;
- a ConfigMap applied again with another value shows in the running container's file, while
  its env var keeps the old value until the container restarts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from pilothouse.kinds import Kind
from pilothouse.manifests import loader
from pilothouse.v1 import objects_pb2 as o
from tests import factories
from tests.fixtures.agents import ClusterFactory, eventually, is_ready

pytestmark = [pytest.mark.slow, pytest.mark.root]

NAMESPACE = "config-test"
VALUE = "v3ry-s3cret-Pa55word-1f0e"

SECRET = f"""
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: {NAMESPACE}}}
stringData:
  password: {VALUE}
"""


def config_map(color: str) -> str:
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: app, namespace: {NAMESPACE}}}
data:
  color: {color}
"""


DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:stable
        command:
        - sh
        - -c
        - >-
          echo "file-hash=$(cat /secret/password | sha256sum | cut -d' ' -f1)";
          echo "env-hash=$(printf %s "$PASSWORD" | sha256sum | cut -d' ' -f1)";
          while true; do echo "tick file=$(cat /config/color) env=$COLOR"; sleep 0.5; done
        env:
        - name: PASSWORD
          valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
        - name: COLOR
          valueFrom: {{configMapKeyRef: {{name: app, key: color}}}}
        volumeMounts:
        - {{name: secret, mountPath: /secret, readOnly: true}}
        - {{name: config, mountPath: /config}}
      volumes:
      - {{name: secret, secret: {{secretName: db}}}}
      - {{name: config, configMap: {{name: app}}}}
"""


def parsed(text: str) -> object:
    documents, problems = loader.parse(text, source="test.yaml")
    assert not problems, problems
    return documents[0].message


def memory_mounts() -> list[Path]:
    """Mount points of tmpfs file systems (memory: where a Secret's files may be)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if fields[fields.index("-") + 1] == "tmpfs":
                points.append(Path(fields[4]))
    return points


def places_holding(roots: list[Path], needles: list[bytes]) -> list[str]:
    """Every regular file on disk under `roots` (tmpfs mounts skipped) holding a needle."""
    memory = [m for m in memory_mounts() if any(r in m.parents for r in roots)]
    found = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if any(m == path or m in path.parents for m in memory):
                    continue
                if not path.is_file() or path.is_symlink():
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(str(path))
    return found


async def test_secrets_reach_only_the_container_and_configmaps_update_its_files(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=1, runtime="runc")
    async with cluster.client() as client:

        async def node_ready() -> object:
            nodes = [n for n in (await client.list(Kind.NODE)).items if isinstance(n, o.Node)]
            return any(is_ready(n) for n in nodes) or "no Ready node"

        await eventually(node_ready, "the node never became Ready")
        await client.apply(factories.namespace(name=NAMESPACE))
        for text in (SECRET, config_map("blue"), DEPLOYMENT):
            await client.apply(parsed(text))

        async def logged(text: str) -> object:
            pods = (await client.list(Kind.POD, namespace=NAMESPACE)).items
            running = [p for p in pods if p.status.phase == "Running"]
            if not running:
                return "no Running pod"
            out = b""
            async for chunk in client.logs(running[0].metadata.name, namespace=NAMESPACE):
                out += chunk
            return text in out.decode() or out.decode()[-500:]

        digest = hashlib.sha256(VALUE.encode()).hexdigest()
        await eventually(lambda: logged(f"file-hash={digest}"), "the Secret's file", within=60)
        await eventually(lambda: logged(f"env-hash={digest}"), "the Secret's env var")

        shown = await cluster.cli("get", "secret", "db", "-n", NAMESPACE, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        body = json.loads(shown.stdout)
        assert body["data"] == {"password": base64.b64encode(VALUE.encode()).decode()}
        assert "stringData" not in body and body["type"] == "Opaque"

        # The ConfigMap changes: the file follows, the env var does not.
        await client.apply(parsed(config_map("green")))
        await eventually(lambda: logged("file=green env=blue"), "the new file", within=60)

        rotated = await cluster.cli("secrets", "rotate-key")
        assert rotated.returncode == 0, rotated.stderr
        assert "1 secret(s) re-encrypted" in rotated.stdout, rotated.stdout
        again = await client.get(Kind.SECRET, "db", namespace=NAMESPACE)
        assert isinstance(again, o.Secret) and again.data["password"] == VALUE.encode()
        keys = json.loads(
            (cluster.control_plane.data_dir / "pki" / "secrets-encryption.json").read_text()
        )
        assert len(keys["keys"]) == 2, "the rotation did not keep the old key beside the new"

        events = (await client.list(Kind.EVENT)).items
        assert not [e for e in events if VALUE in e.message], "an event shows the Secret's value"

    needles = [VALUE.encode(), base64.b64encode(VALUE.encode())]
    roots = [cluster.control_plane.data_dir, *(a.state_dir for a in cluster.agents.values())]
    leaked = places_holding(roots, needles)
    assert not leaked, f"the Secret's value is stored in clear in: {leaked}"

"""`pilothouse images` on a cluster of real processes: a control plane and one agent running real
containers (runc) from the busybox test image, listed through the control plane from the agent.

What a user relies on: the image a running pod uses is listed on the pod's node, with its size,
its image id (the one the pod's status shows) and that pod; `--node` narrows the listing to one
node, and a node that does not exist is an error naming it.
"""

from __future__ import annotations

import pytest

from tests import factories
from tests.fixtures.agents import ClusterFactory, deployment, pods, wait_all_ready, wait_running

pytestmark = [pytest.mark.root, pytest.mark.slow]

NAMESPACE = "images-test"
BUSYBOX = "docker.io/library/busybox:stable"


def table(text: str) -> list[dict[str, str]]:
    """The rows of a kubectl-style table, by column name (columns split where headers start)."""
    header, *lines = text.splitlines()
    names = ["NODE", "IMAGE", "IMAGE ID", "SIZE", "LAST USED", "PODS"]
    starts = [header.index(name) for name in names]
    assert starts == sorted(starts), f"unexpected header {header!r}"
    bounds = [*starts[1:], None]
    return [
        {name: line[a:b].strip() for name, a, b in zip(names, starts, bounds, strict=True)}
        for line in lines
    ]


def _without_age(row: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k != "LAST USED"}


async def test_images_lists_the_image_of_a_running_pod_with_that_pod(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = await cluster_factory(agents=1, runtime="runc")
    async with cluster.client() as client:
        await wait_all_ready(cluster, client)
        await client.apply(factories.namespace(name=NAMESPACE))
        await client.apply(deployment("web", namespace=NAMESPACE, replicas=1))
        await wait_running(client, NAMESPACE, 1, within=60)
        [pod] = await pods(client, NAMESPACE)
    image_id = pod.status.container_statuses[0].image_id
    listed = await cluster.cli("images")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in table(listed.stdout) if r["IMAGE"] == BUSYBOX]
    assert len(rows) == 1, f"the pod's image is not listed once:\n{listed.stdout}"
    [row] = rows
    assert row["NODE"] == "n1"
    assert f"{NAMESPACE}/{pod.metadata.name}" in row["PODS"].split(","), (
        f"the running pod is not listed with its image:\n{listed.stdout}"
    )
    assert image_id.startswith(f"sha256:{row['IMAGE ID']}"), (
        f"the image id differs from the pod status' {image_id}:\n{listed.stdout}"
    )
    assert row["SIZE"].endswith(("kB", "MB")), row
    one = await cluster.cli("images", "--node", "n1")
    assert one.returncode == 0, one.stderr
    assert [_without_age(r) for r in table(one.stdout)] == [
        _without_age(r) for r in table(listed.stdout)
    ], "--node n1 did not list what the whole cluster's listing shows for n1"
    missing = await cluster.cli("images", "--node", "nowhere")
    assert missing.returncode == 1
    assert "nowhere" in missing.stderr and "not found" in missing.stderr, missing.stderr

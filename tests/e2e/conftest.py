"""E2E fixtures: a cluster whose nodes are network namespaces on a bridge of their own.

`cluster_hosts` gives three node hosts (`pilothouse.cli.cluster.netns.NodeHost`: name, netns,
address, pod_cidr, gateway, link) on a fresh bridge and 172.30.X.0/24 subnet, and removes every
namespace, veth, bridge and process in them afterwards. Start agents with
`host.command(argv)` and reach services of the machine with `host.reach("127.0.0.1:PORT")`
(they must listen on `host.gateway` or on all addresses). `agents` (tests.e2e.joining) holds
the joining agents a test starts and stops them all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilothouse.cli.cluster.netns import NodeHost
from tests.e2e.joining import agents  # noqa: F401  (a fixture, requested by name)
from tests.e2e.network import missing_support, node_hosts


@pytest.fixture
def cluster_hosts() -> Iterator[list[NodeHost]]:
    if reason := missing_support():
        pytest.skip(reason)
    with node_hosts(3) as hosts:
        yield hosts

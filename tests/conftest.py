"""Test-suite wiring: fixture modules for each real component, listed explicitly, and a CLI
configuration of the suite's own, so a developer's ~/.pilothouse/config.yaml (written by
`pilothouse up`) never steers a test's CLI calls to a real cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.etcd",
    "tests.fixtures.controlplane",
    "tests.fixtures.registry",
    "tests.fixtures.runtime",
    "tests.fixtures.cluster",
    "tests.fixtures.agents",
    "tests.fixtures.stalls",
]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cli_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty client config for the whole run (tests that need one point PILOTHOUSE_CONFIG
    at their own); the previous environment comes back afterwards."""
    path = tmp_path_factory.mktemp("cli-config") / "config.yaml"
    path.write_text("")
    saved = {k: os.environ.get(k) for k in ("PILOTHOUSE_CONFIG", "PILOTHOUSE_SERVER")}
    os.environ["PILOTHOUSE_CONFIG"] = str(path)
    os.environ.pop("PILOTHOUSE_SERVER", None)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

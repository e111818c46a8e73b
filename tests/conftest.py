"""Test-suite wiring: fixture modules for each real component, listed explicitly."""

pytest_plugins = [
    "tests.fixtures.etcd",
    "tests.fixtures.controlplane",
    "tests.fixtures.registry",
    "tests.fixtures.runtime",
    "tests.fixtures.cluster",
    "tests.fixtures.agents",
]

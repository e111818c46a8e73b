"""Fixtures the unit tests share by name: `pilothouse`, the CLI run in process against the
in-process control plane (tests.unit.cli_support)."""

from tests.unit.cli_support import pilothouse  # noqa: F401  (a fixture, requested by name)

"""`UsageError`: the command line is wrong. Apart from everything else, so that the CLI's entry
point can raise and recognize it without importing a verb (or protobuf, or gRPC)."""

from __future__ import annotations


class UsageError(ValueError):
    """The command line is wrong; the message says how."""

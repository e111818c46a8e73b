"""What every verb receives: the resolved configuration, the output streams, the clock.

Invariant: verbs write only through `Context.out` / `Context.err` and read the time only through
`Context.now()`, so tests drive them with in-memory streams; a verb that needs the control plane
opens its `Client` through `Context.connect()` (one per invocation), which uses the TLS
credentials of the config file when it names them (mutual TLS with the admin's certificate) and
plaintext only when it names none (a control plane run with `--insecure`). The client and the
credentials (gRPC, the PKI) are imported by `connect()`: a verb that never connects pays for
neither.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from pilothouse.config import Config

if TYPE_CHECKING:
    from pilothouse.client import Client


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Context:
    config: Config
    debug: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    now: Callable[[], datetime] = _utcnow

    def connect(self) -> Client:
        from pilothouse import credentials
        from pilothouse.client import Client

        material = credentials.from_config(self.config)
        if material is None:
            return Client(self.config.server)
        return Client(
            self.config.server,
            credentials=material.channel_credentials(),
            options=credentials.channel_options(),
        )

    def namespace(self, flag: str | None) -> str:
        """The namespace a verb acts in: `-n`, else the config file's, else "default"."""
        return flag or self.config.namespace or "default"  # kinds.DEFAULT_NAMESPACE

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        """An error on stderr, each line prefixed "error: " (field errors come one per line)."""
        for line in text.splitlines() or [""]:
            self.err.write(f"error: {line}\n")
        self.err.flush()

    def warn(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

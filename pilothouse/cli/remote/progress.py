"""One progress line per host while several are installed at once.

On a terminal the block of lines (one per host, in the order given) is redrawn in place as
each host moves on; elsewhere (a log, a test) each change is printed as its own line prefixed
with the host, so nothing is lost. Results and errors are printed by the caller afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO


class Progress:
    def __init__(self, hosts: Sequence[str], out: TextIO) -> None:
        self._hosts = list(hosts)
        self._lines = {h: "waiting" for h in hosts}
        self._started = time.monotonic()
        self._out = out
        self._tty = out.isatty() and len(hosts) > 1
        self._drawn = False
        self._width = max((len(h) for h in hosts), default=0)

    def say(self, host: str, text: str) -> None:
        self._lines[host] = text
        seconds = time.monotonic() - self._started
        if not self._tty:
            self._out.write(f"{host}: {text} ({seconds:.0f} s)\n")
            self._out.flush()
            return
        if self._drawn:
            self._out.write(f"\x1b[{len(self._hosts)}F")  # back to the block's first line
        for name in self._hosts:
            self._out.write(f"\x1b[2K{name:<{self._width}}  {self._lines[name]}\n")
        self._out.flush()
        self._drawn = True

    def reporter(self, host: str):  # type: ignore[no-untyped-def]
        """A callable that reports progress for `host`."""
        return lambda text: self.say(host, text)

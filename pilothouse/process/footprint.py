"""What a long-lived Pilothouse process does first so that it holds no memory it does not use.

- `leave_out_optional_renderers`: structlog imports `rich` and `better_exceptions` when they
  are installed (rich arrives with import-linter in test installs); no Pilothouse process
  renders with them, and rich alone costs a process ~5 MiB and the CLI ~40 ms of start-up.
  Must run before structlog is first imported (each process's `__main__`, the console script).
- `limit_malloc_arenas`: glibc gives each thread that contends for malloc an arena of its own
  (up to 8 per core); gRPC's and asyncio's worker threads then keep megabytes of freed memory
  each. Two arenas are the classic bound for threaded Python services (MALLOC_ARENA_MAX=2);
  an explicit MALLOC_ARENA_MAX in the environment wins.

Invariant: both only ever reduce what a process loads or keeps; neither changes behaviour.
"""

from __future__ import annotations

import os
import sys

OPTIONAL_RENDERERS = ("rich", "better_exceptions")
MALLOC_ARENAS = 2


def leave_out_optional_renderers() -> None:
    for name in OPTIONAL_RENDERERS:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]  # import raises ImportError


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Bound this process's malloc arenas (True when glibc took the bound)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    from pilothouse import libc

    try:
        return libc.mallopt(libc.M_ARENA_MAX, arenas)
    except OSError:  # no C library to load (not Linux)
        return False


def lean_process() -> None:
    """Both, for a process's `__main__` (before anything imports structlog)."""
    leave_out_optional_renderers()
    limit_malloc_arenas()

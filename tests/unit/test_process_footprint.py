"""A long-lived process's first steps: the optional renderers are left out (structlog still
works without them) and glibc takes the malloc arena bound unless the environment sets one."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(script: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environ
    )
    return done.stdout.strip()


def test_a_lean_process_logs_without_the_optional_renderers() -> None:
    script = (
        "from pilothouse.process import footprint\n"
        "footprint.lean_process()\n"
        "import sys, structlog\n"
        "from pilothouse import logs\n"
        "logs.setup(json=False)\n"
        "structlog.get_logger().info('pod.started', pod='p')\n"
        "print(sorted(n for n in ('rich', 'better_exceptions') if sys.modules.get(n)))\n"
    )
    assert _run(script) == "[]"


def test_the_arena_bound_is_taken_unless_the_environment_sets_one() -> None:
    script = "from pilothouse.process import footprint; print(footprint.limit_malloc_arenas())"
    assert _run(script) == "True"
    assert _run(script, MALLOC_ARENA_MAX="4") == "False"

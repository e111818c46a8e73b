"""Logging setup, done once per process: structlog key-value events.

Invariant: JSON lines when stderr is not a terminal (services, CI), readable colour-free
console lines when it is. Event names are dotted domain nouns (`pod.started`), keys are the
domain's nouns (`pod=`, `node=`, `deployment=`).
"""

from __future__ import annotations

import logging
import sys

import structlog


def setup(*, debug: bool = False, json: bool | None = None, level: int | None = None) -> None:
    """Configure structlog and the stdlib root logger for this process (`level`: the least
    level shown, when not the default of `debug`)."""
    if level is None:
        level = logging.DEBUG if debug else logging.INFO
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")


def current_level() -> int:
    """The least level this process's structlog configuration shows (for a process that
    hands its logging on to the next program it execs)."""
    return int(structlog.get_logger().bind().get_effective_level())

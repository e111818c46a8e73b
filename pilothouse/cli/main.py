"""The `pilothouse` command line: global flags, verb dispatch, and how failures are reported.

Invariants:
- Global flags (`--server`, `--config`, `--debug`) work before or after the verb, as kubectl's
  do: they are taken out of argv before the verb's parser sees it. After a process verb
  (`controlplane`, `agent`) nothing is taken out: the process parses its own flags, and the
  global flags given before the verb are handed on to it.
- Every failure ends with a non-zero exit code and one `error: …` line per problem on stderr;
  a traceback is printed only with `--debug`. Usage errors exit 2, everything else 1, Ctrl-C 130.
- Verb modules are wired here by hand, in one table; nothing registers itself at import time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TextIO

import structlog

import pilothouse
from pilothouse import config, logs
from pilothouse.cli import apply, delete, get, image, nodes, scale
from pilothouse.cli import diff as diff_verb
from pilothouse.cli import logs as logs_verb
from pilothouse.cli import secrets as secrets_verb
from pilothouse.cli import setimage as set_verb
from pilothouse.cli import token as token_verb
from pilothouse.cli.build import verb as build_verb
from pilothouse.cli.cluster import verbs as cluster_verb
from pilothouse.cli.context import Context
from pilothouse.cli.describe import verbs as describe
from pilothouse.cli.errors import describe_error
from pilothouse.cli.resources import UsageError
from pilothouse.cli.rollout import verbs as rollout_verb
from pilothouse.client import unreachable_message

# The control-plane and node-agent processes live in their own top-level packages, which this
# shared package must never import (import-linter forbids it, so the layering stays one-way);
# yet a person wants one `pilothouse` command. So the process verbs name their modules as
# strings, here and only here, and are imported at run time when their verb is used.
PROCESSES: dict[str, str] = {
    "controlplane": "controlplane.main",
    "agent": "nodeagent.main",
}
PROCESS_HELP = {
    "controlplane": "run the control plane (API server, etcd, controllers, scheduler)",
    "agent": "run a node agent",
}

Verb = Callable[[argparse.Namespace, Context], Awaitable[int]]

# verb -> the coroutine that runs it; the parsers are added by the same modules below.
VERBS: dict[str, Verb] = {
    "apply": apply.run,
    "get": get.run,
    "describe": describe.run,
    "delete": delete.run,
    "scale": scale.run,
    "logs": logs_verb.run,
    "cordon": nodes.run_cordon,
    "uncordon": nodes.run_uncordon,
    "drain": nodes.run_drain,
    "token": token_verb.run,
    **image.VERBS,
    **build_verb.VERBS,
    **rollout_verb.VERBS,
    **set_verb.VERBS,
    **diff_verb.VERBS,
    **secrets_verb.VERBS,
    **cluster_verb.VERBS,
}

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class GlobalFlags:
    server: str | None = None
    config: str | None = None
    debug: bool = False
    version: bool = False


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def split_globals(argv: Sequence[str]) -> tuple[GlobalFlags, list[str]]:
    """Take the global flags out of argv, wherever they are (not after a process verb or --)."""
    values: dict[str, str | None] = {"server": None, "config": None}
    debug = version = False
    rest: list[str] = []
    verb: str | None = None
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--" or (verb is not None and verb in PROCESSES):
            rest.extend(argv[i:])
            break
        name, eq, value = word.partition("=")
        if name in ("--server", "--config"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i + 1]
                i += 1
            values[name[2:]] = value
        elif word == "--debug":
            debug = True
        elif word == "--version" and verb is None:
            version = True
        else:
            if verb is None and not word.startswith("-"):
                verb = word
            rest.append(word)
        i += 1
    flags = GlobalFlags(
        server=values["server"], config=values["config"], debug=debug, version=version
    )
    return flags, rest


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pilothouse",
        description="Pilothouse: a small multi-node container orchestrator.",
        epilog="Global flags, accepted before or after the verb: --server ADDR (control plane "
        "address; also $PILOTHOUSE_SERVER or `server:` in ~/.pilothouse/config.yaml), "
        "--config PATH, --debug.",
    )
    parser.add_argument("--server", help="control plane address, HOST:PORT")
    parser.add_argument("--config", help="config file (default ~/.pilothouse/config.yaml)")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    parser.add_argument("--version", action="store_true", help="print the version")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, text in PROCESS_HELP.items():
        subparsers.add_parser(verb, help=text, add_help=False)
    apply.add_parser(subparsers)
    get.add_parser(subparsers)
    describe.add_parser(subparsers)
    delete.add_parser(subparsers)
    scale.add_parser(subparsers)
    logs_verb.add_parser(subparsers)
    nodes.add_parsers(subparsers)
    image.add_parsers(subparsers)
    build_verb.add_parser(subparsers)
    rollout_verb.add_parsers(subparsers)
    cluster_verb.add_parsers(subparsers)
    set_verb.add_parsers(subparsers)
    diff_verb.add_parser(subparsers)
    token_verb.add_parsers(subparsers)
    secrets_verb.add_parsers(subparsers)
    return parser


def _quiet_logs(*, debug: bool) -> None:
    """Structured logs on stderr: everything with --debug, otherwise warnings only."""
    logs.setup(debug=debug)
    if not debug:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def forwarded(flags: GlobalFlags) -> list[str]:
    """Global flags given before a process verb, handed on to the process (which parses them)."""
    words = ["--debug"] if flags.debug else []
    if flags.server:
        words += ["--server", flags.server]
    if flags.config:
        words += ["--config", flags.config]
    return words


def run_process(verb: str, argv: list[str]) -> int:
    """Hand the rest of the command line to a process's own `main(argv) -> int`."""
    module = importlib.import_module(PROCESSES[verb])
    return int(module.main(argv) or 0)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one `pilothouse` command; returns the exit code (the console script exits with it)."""
    words = list(sys.argv[1:] if argv is None else argv)
    err = err or sys.stderr
    out = out or sys.stdout
    flags = GlobalFlags(debug="--debug" in words)
    try:
        flags, rest = split_globals(words)
        if flags.version:
            out.write(f"pilothouse {pilothouse.__version__}\n")
            return 0
        if rest and rest[0] in PROCESSES:
            return run_process(rest[0], [*forwarded(flags), *rest[1:]])
        if not rest or rest[0] in ("-h", "--help", "help"):
            out.write(build_parser().format_help())
            return 0
        if not rest[0].startswith("-") and rest[0] not in VERBS:
            known = ", ".join([*PROCESSES, *VERBS])
            raise UsageError(f'unknown command "{rest[0]}" (known: {known})')
        args = build_parser().parse_args(rest)
        _quiet_logs(debug=flags.debug)
        settings = config.resolve(server=flags.server, config_path=flags.config)
        ctx = Context(config=settings, debug=flags.debug, out=out, err=err)
        return asyncio.run(VERBS[args.verb](args, ctx))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help inside a verb, or a process that exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # every failure reaches the person as one line (or a traceback)
        if flags.debug:
            traceback.print_exc(file=err)
        for line in describe_error(exc).splitlines():
            err.write(f"error: {line}\n")
        err.flush()
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


__all__ = ["main", "split_globals", "unreachable_message"]


if __name__ == "__main__":
    sys.exit(main())

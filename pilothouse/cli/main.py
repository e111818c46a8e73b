"""The `pilothouse` command line: global flags, verb dispatch, and how failures are reported.

Invariants:
- Global flags (`--server`, `--config`, `--debug`) work before or after the verb, as kubectl's
  do: they are taken out of argv before the verb's parser sees it. After a process verb
  (`controlplane`, `agent`) nothing is taken out: the process parses its own flags, and the
  global flags given before the verb are handed on to it.
- Every failure ends with a non-zero exit code and one `error: …` line per problem on stderr;
  a traceback is printed only with `--debug`. Usage errors exit 2, everything else 1, Ctrl-C 130.
- Verb modules are wired here by hand, in one table (`VERBS`: verb -> its module, the name of
  its run coroutine and its one-line help); nothing registers itself at import time.
- Start-up costs only what the command needs: a verb's module is imported when that verb runs
  (never at import of this module), so `--version` and `--help` import no verb, no gRPC and
  no protobuf, and a verb imports only its own module's dependencies. `--help` lists every
  verb from the table's help lines; tests/unit/test_cli_startup.py checks they are the lines
  each module's own parser gives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TextIO

import pilothouse
from pilothouse.cli.usage import UsageError

if TYPE_CHECKING:
    from pilothouse.cli.context import Context

# The control-plane and node-agent processes live in their own top-level packages, which this
# shared package must never import (import-linter forbids it, so the layering stays one-way);
# yet a person wants one `pilothouse` command. So the process verbs name their modules as
# strings, here and only here, and are imported at run time when their verb is used.
PROCESSES: dict[str, str] = {
    "controlplane": "controlplane.main",
    "agent": "nodeagent.main",
    "hollow": "nodeagent.hollow.main",
}
PROCESS_HELP = {
    "controlplane": "run the control plane (API server, etcd, controllers, scheduler); "
    "`controlplane install USER@HOST` puts one on a host over SSH",
    "agent": "run a node agent",
    "hollow": "run N simulated nodes (hollow agents) in one process",
}

Verb = Callable[[argparse.Namespace, "Context"], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class VerbSpec:
    """Where a verb lives: its module adds its parser (`add_parser` or `add_parsers`, which may
    add sibling verbs too) and holds `run` (its coroutine, or a `VERBS` table naming it)."""

    module: str
    help: str  # what `pilothouse --help` shows; the module's parser says the same
    run: str = "run"


_CLI = "pilothouse.cli"
# In `--help` order.
VERBS: dict[str, VerbSpec] = {
    "apply": VerbSpec(f"{_CLI}.apply", "create or update objects from manifests"),
    "get": VerbSpec(f"{_CLI}.get", "show one or many objects"),
    "describe": VerbSpec(
        f"{_CLI}.describe.verbs", "show the details of an object, with its events"
    ),
    "delete": VerbSpec(f"{_CLI}.delete", "delete objects by name, selector or manifest"),
    "create": VerbSpec(f"{_CLI}.create", "create a job (from a cronjob or image) or a namespace"),
    "wait": VerbSpec(f"{_CLI}.wait", "wait until objects reach a condition (or are deleted)"),
    "scale": VerbSpec(f"{_CLI}.scale", "set the number of replicas of a deployment"),
    "logs": VerbSpec(f"{_CLI}.logs", "print the logs of a pod's container"),
    "exec": VerbSpec(f"{_CLI}.podexec", "run a command in a container"),
    "attach": VerbSpec(
        f"{_CLI}.podexec", "show the output of a container's main process as it runs"
    ),
    "cp": VerbSpec(f"{_CLI}.copy", "copy files between a container and this machine"),
    "port-forward": VerbSpec(f"{_CLI}.portforward", "forward local ports to a pod"),
    "top": VerbSpec(f"{_CLI}.top", "show the CPU and memory use of pods or nodes"),
    "cordon": VerbSpec(f"{_CLI}.nodes", "mark a node unschedulable", run="run_cordon"),
    "uncordon": VerbSpec(f"{_CLI}.nodes", "mark a node schedulable again", run="run_uncordon"),
    "drain": VerbSpec(
        f"{_CLI}.nodes", "cordon a node and move its pods elsewhere", run="run_drain"
    ),
    "image": VerbSpec(
        f"{_CLI}.image", "push image archives to a registry; build the busybox test image"
    ),
    "images": VerbSpec(
        f"{_CLI}.nodeimages", "list the images on nodes, their sizes and the pods using them"
    ),
    "build": VerbSpec(
        f"{_CLI}.build.verb",
        "build an image from a Containerfile (layer cache, OCI output, --push)",
    ),
    "rollout": VerbSpec(
        f"{_CLI}.rollout.verbs",
        "manage the rollout of a deployment (status, history, undo, pause, resume, restart)",
    ),
    "up": VerbSpec(
        f"{_CLI}.cluster.verbs", "start a local cluster: registry, control plane, N agents"
    ),
    "down": VerbSpec(f"{_CLI}.cluster.verbs", "stop the local cluster and remove what it made"),
    "set": VerbSpec(f"{_CLI}.setimage", "change fields of objects (set image)"),
    "diff": VerbSpec(f"{_CLI}.diff", "show what apply would change (exit 1 when something would)"),
    "token": VerbSpec(f"{_CLI}.token", "manage bootstrap tokens with which nodes join"),
    "secrets": VerbSpec(f"{_CLI}.secrets", "manage the encryption of Secrets at rest"),
    "node": VerbSpec(
        f"{_CLI}.nodeaccess",
        "add or remove nodes over SSH; approve or revoke a node's credentials",
    ),
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


def _module(verb: str):  # type: ignore[no-untyped-def]
    import importlib

    return importlib.import_module(VERBS[verb].module)


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
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
    return parser, subparsers


def help_parser() -> argparse.ArgumentParser:
    """The top-level parser as `--help` shows it: every verb by its table line, none imported."""
    parser, subparsers = _top_parser()
    for verb, spec in VERBS.items():
        subparsers.add_parser(verb, help=spec.help, add_help=False)
    return parser


def build_parser(*verbs: str) -> argparse.ArgumentParser:
    """The parser with the real parsers of `verbs`' modules (of every verb when none is named;
    importing every verb module: for tests and documentation, not for running one verb)."""
    parser, subparsers = _top_parser()
    added: set[str] = set()
    for verb in verbs or VERBS:
        module = VERBS[verb].module
        if module in added:
            continue  # its add_parsers added its siblings already
        added.add(module)
        loaded = _module(verb)
        adder = getattr(loaded, "add_parsers", None) or loaded.add_parser
        adder(subparsers)
    return parser


def verb_function(verb: str) -> Verb:
    """The coroutine that runs `verb` (its module imported now)."""
    loaded = _module(verb)
    table = getattr(loaded, "VERBS", None)
    if isinstance(table, dict) and verb in table:
        return table[verb]  # type: ignore[no-any-return]
    return getattr(loaded, VERBS[verb].run)  # type: ignore[no-any-return]


def _quiet_logs(*, debug: bool) -> None:
    """Structured logs on stderr: everything with --debug, otherwise warnings only. structlog
    is configured now if the verb's modules imported it, else the moment something does
    (`_ConfigureOnImport`): a command that never logs never loads it (~20 ms of start-up)."""
    import logging

    def configure() -> None:
        from pilothouse import logs

        logs.setup(debug=debug, level=None if debug else logging.WARNING)

    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ConfigureOnImport)]
    if debug or "structlog" in sys.modules:
        configure()
    else:
        sys.meta_path.insert(0, _ConfigureOnImport(configure))


class _ConfigureOnImport:
    """A one-shot import hook: structlog is configured right after its first import."""

    def __init__(self, configure: Callable[[], None]) -> None:
        self._configure = configure

    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != "structlog":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        run = loader.exec_module

        def exec_module(module: object) -> None:
            run(module)  # type: ignore[arg-type]
            self._configure()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


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
    import importlib

    from pilothouse.process import footprint

    footprint.limit_malloc_arenas()
    module = importlib.import_module(PROCESSES[verb])
    return int(module.main(argv) or 0)


def _run_verb(verb: str, words: list[str], flags: GlobalFlags, out: TextIO, err: TextIO) -> int:
    import asyncio

    from pilothouse import config
    from pilothouse.cli.context import Context

    args = build_parser(verb).parse_args(words)
    _quiet_logs(debug=flags.debug)
    settings = config.resolve(server=flags.server, config_path=flags.config)
    ctx = Context(config=settings, debug=flags.debug, out=out, err=err)
    return asyncio.run(verb_function(args.verb)(args, ctx))


def _run_controlplane_install(
    words: list[str], flags: GlobalFlags, out: TextIO, err: TextIO
) -> int:
    """`controlplane install USER@HOST`: the CLI's own (pilothouse.cli.remote), not the
    process's; its global flags are taken out as after any verb."""
    import asyncio

    from pilothouse import config
    from pilothouse.cli.context import Context
    from pilothouse.cli.remote import flags as remote_flags
    from pilothouse.cli.remote.controlplanes import run_install

    more, rest = split_globals(["install", *words])
    debug = flags.debug or more.debug
    args = remote_flags.controlplane_install_parser().parse_args(rest[1:])
    _quiet_logs(debug=debug)
    settings = config.resolve(
        server=more.server or flags.server, config_path=more.config or flags.config
    )
    ctx = Context(config=settings, debug=debug, out=out, err=err)
    return asyncio.run(run_install(args, ctx))


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one `pilothouse` command; returns the exit code (the console script exits with it)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the console script (a process of its own), not a caller in-process
        from pilothouse.process import footprint

        footprint.leave_out_optional_renderers()
    err = err or sys.stderr
    out = out or sys.stdout
    flags = GlobalFlags(debug="--debug" in words)
    try:
        flags, rest = split_globals(words)
        if flags.version:
            out.write(f"pilothouse {pilothouse.__version__}\n")
            return 0
        if rest[:2] == ["controlplane", "install"]:
            return _run_controlplane_install(rest[2:], flags, out, err)
        if rest and rest[0] in PROCESSES:
            return run_process(rest[0], [*forwarded(flags), *rest[1:]])
        if not rest or rest[0] in ("-h", "--help", "help"):
            out.write(help_parser().format_help())
            return 0
        if rest[0].startswith("-"):
            help_parser().parse_args(rest)  # an unknown flag before any verb: a usage error
            raise UsageError("no command given (see `pilothouse --help`)")
        if rest[0] not in VERBS:
            known = ", ".join([*PROCESSES, *VERBS])
            raise UsageError(f'unknown command "{rest[0]}" (known: {known})')
        return _run_verb(rest[0], rest, flags, out, err)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help inside a verb, or a process that exits
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:  # every failure reaches the person as one line (or a traceback)
        from pilothouse.cli.errors import describe_error

        if flags.debug:
            import traceback

            traceback.print_exc(file=err)
        for line in describe_error(exc).splitlines():
            err.write(f"error: {line}\n")
        err.flush()
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


__all__ = ["VERBS", "build_parser", "help_parser", "main", "split_globals"]


if __name__ == "__main__":
    sys.exit(main())

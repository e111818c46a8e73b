"""The CLI starts with only what the command needs: `--version` and `--help` import no verb,
gRPC or protobuf; a build without --push imports no gRPC; and `--help` lists every verb with the
help line its own module's parser gives (the table in main.py cannot drift from the modules)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse.cli import main as cli

HEAVY = ("grpc", "google.protobuf", "cryptography", "yaml", "pilothouse.client")


def imported_after(argv: list[str]) -> list[str]:
    """The modules a fresh interpreter holds after running `pilothouse ARGV` in-process."""
    code = (
        "import io, json, sys\n"
        "from pilothouse.cli import main\n"
        f"code = main.main({argv!r}, out=io.StringIO(), err=io.StringIO())\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    code, modules = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, f"pilothouse {' '.join(argv)} exited {code}: {done.stderr}"
    return modules


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_no_verb_grpc_or_protobuf(argv: list[str]) -> None:
    modules = imported_after(argv)
    assert heavy(modules) == [], f"`pilothouse {' '.join(argv)}` imported {heavy(modules)}"
    verbs = sorted({spec.module for spec in cli.VERBS.values()} & set(modules))
    assert verbs == [], f"`pilothouse {' '.join(argv)}` imported verb modules {verbs}"


def test_a_build_without_push_imports_no_grpc(tmp_path: Path) -> None:
    modules = imported_after(["build", "--root", str(tmp_path / "store"), "--prune"])
    assert "pilothouse.cli.build.verb" in modules
    grpc = [m for m in modules if m == "grpc" or m.startswith(("grpc.", "pilothouse.client"))]
    assert grpc == [], f"`pilothouse build --prune` imported {grpc}"


def test_help_lists_every_verb_with_its_modules_own_help_line() -> None:
    assert cli.help_parser().format_help() == cli.build_parser().format_help(), (
        "the verb table's help lines differ from the verb modules' parsers"
    )


def test_every_verb_runs_a_coroutine_of_its_module() -> None:
    for verb in cli.VERBS:
        function = cli.verb_function(verb)
        assert inspect.iscoroutinefunction(function), f"{verb} runs {function!r}"


def test_a_verb_parses_with_its_module_alone() -> None:
    args = cli.build_parser("images").parse_args(["images", "--node", "n1"])
    assert (args.verb, args.node) == ("images", "n1")
    assert json.dumps(sorted(cli.build_parser("cordon")._subparsers._group_actions[0].choices)) == (  # type: ignore[union-attr]
        json.dumps(sorted(["controlplane", "agent", "hollow", "cordon", "uncordon", "drain"]))
    ), "a verb's module should add its own parsers (and its siblings'), no others"

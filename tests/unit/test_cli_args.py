"""The command line: global flags anywhere, config precedence, and how errors reach a person."""

from __future__ import annotations

import argparse
import io
import socket
from pathlib import Path

import pytest

from pilothouse import config
from pilothouse.cli import main as cli
from pilothouse.cli.resources import Target, UsageError, parse_targets
from pilothouse.kinds import Kind


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def closed_port() -> str:
    """An address on loopback where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting of the person running the tests leaks in."""
    monkeypatch.delenv(config.SERVER_ENV, raising=False)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "h:1", "--debug", "get", "pods"],
        ["get", "pods", "--server", "h:1", "--debug"],
        ["get", "--server=h:1", "pods", "--debug"],
        ["--debug", "get", "pods", "--server=h:1"],
    ],
)
def test_global_flags_work_before_or_after_the_verb(argv: list[str]) -> None:
    flags, rest = cli.split_globals(argv)
    assert (flags.server, flags.debug) == ("h:1", True), f"global flags not found in {argv}"
    assert rest == ["get", "pods"], f"verb arguments mangled: {rest}"


def test_flags_after_a_process_verb_belong_to_the_process() -> None:
    flags, rest = cli.split_globals(["--debug", "agent", "--server", "cp:7070", "--debug"])
    assert flags.debug and flags.server is None
    assert rest == ["agent", "--server", "cp:7070", "--debug"], "the agent lost its own flags"


def test_global_flags_before_a_process_verb_are_handed_on_to_it() -> None:
    flags, rest = cli.split_globals(["--debug", "--server", "cp:7070", "agent", "--name", "n1"])
    assert [*cli.forwarded(flags), *rest[1:]] == ["--debug", "--server", "cp:7070", "--name", "n1"]


def test_arguments_after_double_dash_are_left_alone() -> None:
    _, rest = cli.split_globals(["logs", "web", "--", "--server", "x"])
    assert rest == ["logs", "web", "--", "--server", "x"]


def test_a_global_flag_without_its_value_is_a_usage_error() -> None:
    code, _, err = run("get", "pods", "--server")
    assert code == cli.EXIT_USAGE
    assert err == "error: flag needs an argument: --server\n"


def test_unreachable_server_says_where_and_what_to_do(closed_port: str) -> None:
    for argv in (
        ("--server", closed_port, "get", "deploy"),
        ("get", "deploy", "--server", closed_port),
    ):
        code, out, err = run(*argv)
        assert code == 1, f"exit code {code} for an unreachable server"
        assert out == ""
        assert err == (
            f"error: cannot reach the control plane at {closed_port}: connection refused. "
            "Is it running? Start one with `pilothouse controlplane` or pass --server.\n"
        ), f"unexpected message: {err!r}"


def test_the_server_address_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, closed_port: str
) -> None:
    monkeypatch.setenv(config.SERVER_ENV, closed_port)
    code, _, err = run("get", "pods")
    assert code == 1 and f"at {closed_port}:" in err, f"env address not used: {err!r}"


def test_errors_are_one_line_without_traceback_unless_debug() -> None:
    code, _, err = run("get", "gadgets")
    assert code == cli.EXIT_USAGE
    assert err.count("\n") == 1 and "Traceback" not in err, f"not one line: {err!r}"
    assert err.startswith('error: unknown resource type "gadgets"')
    code, _, err = run("--debug", "get", "gadgets")
    assert code == cli.EXIT_USAGE
    assert "Traceback" in err, "--debug should show the traceback"
    assert err.rstrip().endswith(
        'error: unknown resource type "gadgets" (known: '
        + ", ".join(k.info.plural for k in Kind)
        + ")"
    )


def test_unknown_verb_and_bad_flag_are_one_line_usage_errors() -> None:
    code, _, err = run("frobnicate")
    assert code == cli.EXIT_USAGE and err.startswith('error: unknown command "frobnicate"')
    assert err.count("\n") == 1
    code, _, err = run("get", "pods", "--bogus")
    assert code == cli.EXIT_USAGE and err.count("\n") == 1, err
    assert "--bogus" in err


def test_invalid_manifest_is_reported_with_its_field_path(tmp_path: Path, closed_port: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web}}\n    spec:\n"
        "      containers: [{name: c, image: busybox, imagePullPolicyy: Always}]\n"
    )
    # The server is unreachable: the file must be refused before any connection is tried.
    code, out, err = run("--server", closed_port, "apply", "-f", str(bad))
    assert code == 1 and out == ""
    assert "spec.template.spec.containers[0].imagePullPolicyy" in err, err
    assert "cannot reach" not in err, "an invalid manifest must fail before contacting the server"


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("pilothouse ")


def test_process_verbs_name_importable_mains() -> None:
    import importlib

    for verb, module in cli.PROCESSES.items():
        assert callable(importlib.import_module(module).main), f"`pilothouse {verb}` has no main"


def test_help_of_a_verb_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("get", "--help")
    assert code == 0
    assert "--selector" in capsys.readouterr().out


def _parsers(parser: argparse.ArgumentParser, path: str = "pilothouse"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


@pytest.mark.parametrize("columns", ["200", "80", "40"])
def test_help_of_every_verb_renders_at_any_terminal_width(
    monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    for path, parser in _parsers(cli.build_parser()):
        try:
            text = parser.format_help()
        except Exception as error:  # argparse asserts on some metavars when it wraps usage
            pytest.fail(f"`{path} --help` at {columns} columns fails: {error!r}")
        assert text.startswith("usage:"), f"`{path} --help` printed {text[:80]!r}"


# --- resource names ------------------------------------------------------------------------------


def test_kinds_accept_kubernetes_names_and_short_names() -> None:
    for word in ("deployments", "deployment", "deploy", "Deployment", "deployments.apps"):
        assert parse_targets([word, "web"], verb="get") == [Target(Kind.DEPLOYMENT, ("web",))]
    assert parse_targets(["po"], verb="get") == [Target(Kind.POD)]
    assert parse_targets(["no", "n1"], verb="get") == [Target(Kind.NODE, ("n1",))]
    assert parse_targets(["deploy/web", "po/a", "deploy/api"], verb="get") == [
        Target(Kind.DEPLOYMENT, ("web", "api")),
        Target(Kind.POD, ("a",)),
    ]


def test_mixing_the_two_forms_is_refused() -> None:
    with pytest.raises(UsageError, match="resource/name form"):
        parse_targets(["deploy", "pod/x"], verb="get")


# --- config --------------------------------------------------------------------------------------


def test_server_precedence_flag_env_file_default(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("server: file:3\nnamespace: team\n")
    env = {config.SERVER_ENV: "env:2", config.CONFIG_ENV: str(file)}
    assert config.resolve(server="flag:1", environ=env).server == "flag:1"
    assert config.resolve(environ=env).server == "env:2"
    from_file = config.resolve(environ={config.CONFIG_ENV: str(file)})
    assert (from_file.server, from_file.source, from_file.namespace) == (
        "file:3",
        config.Source.FILE,
        "team",
    )
    assert config.resolve(environ={"HOME": str(tmp_path / "nobody")}).server == "127.0.0.1:7070"


def test_home_config_file_is_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".pilothouse").mkdir(parents=True)
    (home / ".pilothouse" / "config.yaml").write_text("server: home:9\n")
    assert config.resolve(environ={"HOME": str(home)}).server == "home:9"


def test_bad_config_files_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.resolve(config_path=str(tmp_path / "missing.yaml"), environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [\n")
    with pytest.raises(config.ConfigError, match=r"broken.yaml is not valid YAML"):
        config.resolve(config_path=str(broken), environ={})
    typo = tmp_path / "typo.yaml"
    typo.write_text("sever: x:1\n")
    with pytest.raises(config.ConfigError, match="unknown key 'sever'"):
        config.resolve(config_path=str(typo), environ={})


def test_a_bad_config_file_is_a_one_line_cli_error(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("sever: x:1\n")
    code, _, err = run("get", "pods", "--config", str(typo))
    assert code == 1 and err.count("\n") == 1 and "unknown key 'sever'" in err, err


def test_unavailable_sent_by_the_server_is_not_mistaken_for_no_connection() -> None:
    from pilothouse.client import connection_failure

    assert connection_failure("etcd is unavailable: connection refused; retrying") is None
    assert (
        connection_failure(
            "failed to connect to all addresses; last error: UNKNOWN: "
            "ipv4:127.0.0.1:1: Failed to connect to remote host: "
            "Connection refused"
        )
        == "connection refused"
    )

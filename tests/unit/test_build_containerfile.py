"""The Containerfile parser and the word/variable lexer of `pilothouse build` (pure)."""

from __future__ import annotations

import pytest

from pilothouse.cli.build import BuildError, words
from pilothouse.cli.build.containerfile import parse


def test_instructions_keep_their_first_line_and_join_continuations() -> None:
    cf = parse(
        "# a comment\n"
        "FROM busybox:stable AS base\n"
        "\n"
        "RUN echo one \\\n"
        "# a comment inside the continuation is dropped\n"
        "    && echo two\n"
        "copy --chown=1:2 --from=base a b\n",
        file="app/Containerfile",
    )
    from_, run, copy = cf.instructions
    assert (from_.keyword, from_.line, from_.args) == ("FROM", 2, "busybox:stable AS base")
    assert run.line == 4 and run.args == "echo one     && echo two"
    assert copy.keyword == "COPY" and copy.line == 7
    assert copy.flags == {"chown": "1:2", "from": "base"} and copy.args == "a b"
    assert copy.file == "app/Containerfile"


def test_exec_form_and_shell_form() -> None:
    cf = parse('FROM x\nCMD ["sh", "-c", "echo hi"]\nENTRYPOINT echo [not json\n')
    assert cf.instructions[1].exec_form == ("sh", "-c", "echo hi")
    assert cf.instructions[2].exec_form is None


def test_heredocs_take_their_body_and_do_not_become_instructions() -> None:
    cf = parse(
        "FROM x\n"
        "RUN <<EOF\n"
        "echo hello\n"
        "FOO not an instruction\n"
        "EOF\n"
        "COPY <<'CONF' /etc/app.conf\n"
        "key=$VALUE\n"
        "CONF\n"
        "USER nobody\n"
    )
    keywords = [i.keyword for i in cf.instructions]
    assert keywords == ["FROM", "RUN", "COPY", "USER"]
    run, copy = cf.instructions[1], cf.instructions[2]
    assert run.heredocs[0].body == "echo hello\nFOO not an instruction\n"
    assert run.heredocs[0].expand is True
    assert copy.heredocs[0].name == "CONF" and copy.heredocs[0].expand is False
    assert cf.instructions[3].line == 9


def test_escape_directive_changes_the_continuation_character() -> None:
    cf = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo done\n")
    assert cf.escape == "`"
    assert cf.instructions[1].args == "dir c:\\   && echo done"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\n\nFOO bar\n", "Containerfile:3: unknown instruction 'FOO'"),
        ("FROM x\nCOPY --frm=a b c\n", "Containerfile:2: COPY: unknown flag --frm"),
        ("FROM x\nRUN <<EOF\necho\n", "Containerfile:2: heredoc <<EOF is not terminated"),
        ("# escape=x\nFROM x\n", "Containerfile:1: escape directive must be"),
    ],
)
def test_errors_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(BuildError) as err:
        parse(text)
    assert str(err.value).startswith(message), str(err.value)


def test_words_expand_variables_and_remove_quotes() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert words.split("x \"y z\" $A ${A} ${B:-dflt} ${A:+alt} '$A' \\$A", env) == [
        "x",
        "y z",
        "1",
        "1",
        "dflt",
        "alt",
        "$A",
        "$A",
    ]
    assert words.expand("${EMPTY:-e}/${EMPTY-f}", env) == "e/"
    assert words.pairs('K=v K2="two words" K3=$A', env) == [
        ("K", "v"),
        ("K2", "two words"),
        ("K3", "1"),
    ]
    assert words.pairs("LEGACY some value", env) == [("LEGACY", "some value")]
    with pytest.raises(words.WordError):
        words.split('"unterminated', env)
    with pytest.raises(words.WordError, match="B: must be set"):
        words.expand("${B:?must be set}", env)

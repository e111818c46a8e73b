"""Parse a Containerfile into instructions that remember their file and line.

Why not a library: `dockerfile-parse` (PyPI) gives line numbers and joins continuations, but it
reads heredoc bodies as instructions of their own (`RUN <<EOT` then `ECHO hi`), so this is a
careful parser of the documented syntax instead:

- parser directives (`# escape=\\`` and `# syntax=…`, the latter ignored) only at the very top;
- comment lines (`#` first on the line) are dropped, also inside a continued instruction;
- a line ending in the escape character (then optional blanks) continues on the next line; the
  escape and the newline are removed, blank continuation lines are skipped;
- heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) in RUN, COPY and ADD take the following lines up to
  the terminator; quoted terminators turn off variable expansion in the body, `<<-` strips
  leading tabs;
- the JSON (exec) form is recognised for RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD and VOLUME;
- leading `--flag=value` words are split off for the instructions that take flags.

Invariants: parsing is pure (text in, instructions out); every error is a `BuildError` naming
the file and line; keywords are upper-cased, flag names lower-cased, nothing else is changed
(variable expansion happens later, against the stage's environment: `words.py`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pilothouse.cli.build import BuildError, located

KNOWN = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
JSON_FORMS = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"}
HEREDOC_FORMS = {"RUN", "COPY", "ADD"}
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


@dataclass(frozen=True, slots=True)
class Heredoc:
    name: str
    body: str
    expand: bool  # False when the terminator was quoted


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case, e.g. "COPY"
    args: str  # the text after the keyword and flags (continuations joined)
    line: int  # 1-based line the instruction starts on
    file: str = "Containerfile"
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: tuple[str, ...] | None = None  # the JSON array form, when used
    heredocs: tuple[Heredoc, ...] = ()
    original: str = ""  # the instruction as written (joined), for history and messages

    def error(self, message: str) -> BuildError:
        return BuildError(located(self.file, self.line, f"{self.keyword}: {message}"))


@dataclass(frozen=True, slots=True)
class Containerfile:
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    file: str = "Containerfile"


def parse(text: str, *, file: str = "Containerfile") -> Containerfile:
    """Parse a whole Containerfile; raise `BuildError` naming `file` and the line at fault."""
    lines = text.splitlines()
    escape, start = _directives(lines, file=file)
    out: list[Instruction] = []
    i = start
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        joined, i = _logical_line(lines, i, escape)
        keyword, _, rest = joined.strip().partition(" ")
        if not rest and "\t" in keyword:
            keyword, _, rest = keyword.partition("\t")
        upper = keyword.upper()
        if upper not in KNOWN:
            raise BuildError(
                located(
                    file,
                    first,
                    f"unknown instruction {keyword!r} (known: {', '.join(KNOWN)})",
                )
            )
        rest = rest.strip()
        flags, rest = _flags(upper, rest, file=file, line=first)
        heredocs: tuple[Heredoc, ...] = ()
        if upper in HEREDOC_FORMS and "<<" in rest:
            heredocs, i = _heredocs(rest, lines, i, file=file, line=first)
        exec_form = _json_form(rest) if upper in JSON_FORMS and not heredocs else None
        out.append(
            Instruction(
                keyword=upper,
                args=rest,
                line=first,
                file=file,
                flags=flags,
                exec_form=exec_form,
                heredocs=heredocs,
                original=" ".join(joined.split()) if not heredocs else joined.strip(),
            )
        )
    return Containerfile(instructions=tuple(out), escape=escape, file=file)


def _directives(lines: list[str], *, file: str) -> tuple[str, int]:
    escape = "\\"
    seen: set[str] = set()
    i = 0
    for i, raw in enumerate(lines):
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            return escape, i
        name, value = match.group(1).lower(), match.group(2)
        if name not in ("escape", "syntax", "check"):
            return escape, i  # an ordinary comment ends the directives
        if name in seen:
            raise BuildError(located(file, i + 1, f"parser directive {name!r} given twice"))
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise BuildError(
                    located(file, i + 1, f"escape directive must be \\ or `, not {value!r}")
                )
            escape = value
    return escape, len(lines)


def _logical_line(lines: list[str], i: int, escape: str) -> tuple[str, int]:
    """Join a line with its continuations; return the text and the index after it."""
    parts: list[str] = []
    while i < len(lines):
        raw = lines[i]
        i += 1
        if parts and (not raw.strip() or raw.strip().startswith("#")):
            continue  # blank and comment lines inside a continuation are dropped
        body = raw.rstrip()
        if body.endswith(escape):  # as Docker: any trailing escape continues the line
            parts.append(body[: -len(escape)])
            continue
        parts.append(raw)
        return "".join(parts), i
    return "".join(parts), i


def _flags(keyword: str, rest: str, *, file: str, line: int) -> tuple[dict[str, str], str]:
    allowed = FLAGS.get(keyword, frozenset())
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, tail = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        name = name.lower()
        if name not in allowed:
            known = ", ".join(f"--{f}" for f in sorted(allowed)) or "none"
            raise BuildError(
                located(file, line, f"{keyword}: unknown flag --{name} (flags it takes: {known})")
            )
        if not eq and name != "link":
            raise BuildError(located(file, line, f"{keyword}: flag --{name} needs =VALUE"))
        flags[name] = value if eq else "true"
        rest = tail.lstrip()
    return flags, rest


def _heredocs(
    rest: str, lines: list[str], i: int, *, file: str, line: int
) -> tuple[tuple[Heredoc, ...], int]:
    docs: list[Heredoc] = []
    for match in _HEREDOC.finditer(rest):
        strip_tabs, quote, name = match.group(1) == "-", match.group(2), match.group(3)
        body: list[str] = []
        while True:
            if i >= len(lines):
                raise BuildError(
                    located(file, line, f"heredoc <<{name} is not terminated (no line {name!r})")
                )
            text = lines[i]
            i += 1
            if (text.lstrip("\t") if strip_tabs else text) == name:
                break
            body.append(text.lstrip("\t") if strip_tabs else text)
        content = "\n".join(body) + ("\n" if body else "")
        docs.append(Heredoc(name=name, body=content, expand=not quote))
    return tuple(docs), i


def _json_form(rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None  # not JSON: the shell form, as Docker treats it
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)

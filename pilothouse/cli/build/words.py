"""Words and variables in instruction arguments, as Docker's shell lexer reads them.

`split(text, env)` turns `a "b c" $X` into words with quotes removed and `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR:+alt}`, `${VAR-default}`, `${VAR+alt}` and `${VAR:?message}` expanded
from `env`; single quotes stop expansion, the escape character makes the next character literal.
`pairs(text, env)` reads the `KEY=VALUE …` lists of ENV, LABEL and ARG (and the legacy
`ENV KEY value with spaces` form).

Which instructions expand variables at all is Docker's list (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR, ONBUILD); RUN, CMD and ENTRYPOINT are left to the shell.

Invariants: pure functions; an unset variable expands to ""; a malformed text (an unterminated
quote or `${`) raises `WordError`, which the caller turns into a `FILE:LINE:` error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class WordError(ValueError):
    """The text cannot be read as words (unterminated quote, bad `${…}`)."""


def split(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """The words of `text`, expanded; quotes removed; blanks outside quotes separate words."""
    return _Lexer(text, env, escape).words(split=True)


def expand(text: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """`text` as one word: expanded and unquoted, blanks kept."""
    words = _Lexer(text, env, escape).words(split=False)
    return words[0] if words else ""


def pairs(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[tuple[str, str]]:
    """`K=V K2="v 2"` (or the legacy `K value with spaces`) as (key, value) pairs, expanded."""
    raw = _Lexer(text, env, escape).words(split=True)
    if raw and "=" not in raw[0]:
        key, _, value = text.strip().partition(" ")
        if not key:
            raise WordError("missing a name")
        return [(key, expand(value.strip(), env, escape=escape))]
    out = []
    for word in raw:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise WordError(f"{word!r} is not NAME=VALUE")
        out.append((key, value))
    return out


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.pos = 0

    def words(self, *, split: bool) -> list[str]:
        out: list[str] = []
        word: list[str] | None = None
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\n" and split:
                if word is not None:
                    out.append("".join(word))
                    word = None
                self.pos += 1
                continue
            word = word if word is not None else []
            if ch == self.escape:
                self.pos += 1
                if self.pos < len(text):
                    word.append(text[self.pos])
                    self.pos += 1
                continue
            if ch == "'":
                word.append(self._single())
            elif ch == '"':
                word.append(self._double())
            elif ch == "$":
                word.append(self._dollar())
            else:
                word.append(ch)
                self.pos += 1
        if word is not None:
            out.append("".join(word))
        return out

    def _single(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise WordError(f"unterminated single quote in {self.text!r}")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def _double(self) -> str:
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == self.escape and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                if nxt in ('"', "$", self.escape):
                    out.append(nxt)
                    self.pos += 2
                    continue
                out.append(ch)
                self.pos += 1
                continue
            if ch == "$":
                out.append(self._dollar())
                continue
            out.append(ch)
            self.pos += 1
        raise WordError(f"unterminated double quote in {self.text!r}")

    def _dollar(self) -> str:
        text = self.text
        start = self.pos + 1
        if start < len(text) and text[start] == "{":
            end = text.find("}", start)
            if end < 0:
                raise WordError(f"unterminated ${{ in {text!r}")
            inner = text[start + 1 : end]
            self.pos = end + 1
            return self._braced(inner)
        match = _NAME.match(text, start)
        if not match:
            self.pos += 1
            return "$"
        self.pos = match.end()
        return self.env.get(match.group(0), "")

    def _braced(self, inner: str) -> str:
        match = _NAME.match(inner)
        if not match:
            raise WordError(f"bad substitution ${{{inner}}}")
        name, op = match.group(0), inner[match.end() :]
        value = self.env.get(name)
        if not op:
            return value or ""
        for prefix in (":-", ":+", ":?", "-", "+", "?"):
            if op.startswith(prefix):
                word = expand(op[len(prefix) :], self.env, escape=self.escape)
                unset = value is None or (prefix.startswith(":") and value == "")
                if prefix.endswith("-"):
                    return word if unset else value or ""
                if prefix.endswith("+"):
                    return "" if unset else word
                if unset:
                    raise WordError(f"{name}: {word or 'is not set'}")
                return value or ""
        raise WordError(f"unsupported substitution ${{{inner}}}")

"""Label selectors and field selectors, in kubectl's syntax.

Vocabulary: a *selector* is a conjunction of *requirements*; a requirement names a label key,
an operator and (for some operators) values. "app=web,tier!=db,env in (a,b),!key,key" is five
requirements that must all hold.

Invariants: `parse` accepts exactly what `kubectl get -l` accepts for equality- and set-based
requirements (=, ==, !=, in, notin, exists, !exists, and the numeric > and <) and rejects the rest
with a `SelectorError` that quotes the selector and says what was expected. The empty selector
matches every object. `!=` and `notin` match objects that lack the key, as in Kubernetes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from pilothouse.manifests import names


class SelectorError(ValueError):
    """A label or field selector that cannot be parsed."""


class Operator(enum.StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = ">"
    LESS_THAN = "<"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                try:
                    have = int(value) if value is not None else None
                except ValueError:
                    return False
                if have is None:
                    return False
                wanted = int(self.values[0])
                return have > wanted if self.operator is Operator.GREATER_THAN else have < wanted
        raise AssertionError(self.operator)  # pragma: no cover

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(sorted(self.values))})"
            case _:
                return f"{self.key}{self.operator.value}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class Selector:
    """All requirements must hold; no requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def from_match_labels(match_labels: Mapping[str, str]) -> Selector:
    """The selector of a `matchLabels` map: every key equals its value. {} selects everything."""
    return Selector(
        tuple(
            Requirement(key, Operator.EQUALS, (value,))
            for key, value in sorted(match_labels.items())
        )
    )


# ---------------------------------------------------------------------------------------------
# Label selector parsing.

_SPECIAL = "=!(),<>"


class _Token(NamedTuple):
    kind: str  # "ident", "op", "(", ")", ",", "end"
    text: str
    position: int


def _tokens(text: str) -> Iterator[_Token]:
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in "(),":
            yield _Token(char, char, i)
            i += 1
            continue
        if char in "=!<>":
            two = text[i : i + 2]
            if two in ("==", "!="):
                yield _Token("op", "=" if two == "==" else "!=", i)
                i += 2
            else:
                yield _Token("op", char, i)
                i += 1
            continue
        start = i
        while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
            i += 1
        yield _Token("ident", text[start:i], start)
    yield _Token("end", "", len(text))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(_tokens(text))
        self.at = 0

    def fail(self, token: _Token, expected: str) -> SelectorError:
        found = "end of selector" if token.kind == "end" else f"'{token.text}'"
        return SelectorError(
            f'invalid label selector "{self.text}": found {found} at position '
            f"{token.position}, expected {expected}"
        )

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def key(self) -> str:
        token = self.take()
        if token.kind != "ident":
            raise self.fail(token, "a label key")
        errors = names.qualified_name(token.text)
        if errors:
            raise SelectorError(
                f'invalid label selector "{self.text}": key "{token.text}": {"; ".join(errors)}'
            )
        return token.text

    def value(self) -> str:
        token = self.peek()
        if token.kind in (",", "end", ")"):
            return ""  # "key=" selects the empty value, as in Kubernetes
        self.take()
        if token.kind != "ident":
            raise self.fail(token, "a label value")
        errors = names.label_value(token.text)
        if errors:
            raise SelectorError(
                f'invalid label selector "{self.text}": value "{token.text}": {"; ".join(errors)}'
            )
        return token.text

    def value_set(self) -> tuple[str, ...]:
        token = self.take()
        if token.kind != "(":
            raise self.fail(token, "'(' opening the set of values")
        values = [self.value()]
        while self.peek().kind == ",":
            self.take()
            values.append(self.value())
        token = self.take()
        if token.kind != ")":
            raise self.fail(token, "',' or ')' closing the set of values")
        if values == [""]:
            raise self.fail(token, "at least one value in the set")
        return tuple(sorted(set(values)))  # a set, as in Kubernetes

    def requirement(self) -> Requirement:
        token = self.peek()
        if token.kind == "op" and token.text == "!":
            self.take()
            return Requirement(self.key(), Operator.DOES_NOT_EXIST)
        key = self.key()
        token = self.peek()
        if token.kind in (",", "end"):
            return Requirement(key, Operator.EXISTS)
        self.take()
        if token.kind == "op" and token.text in ("=", "!="):
            return Requirement(key, Operator(token.text), (self.value(),))
        if token.kind == "op" and token.text in ("<", ">"):
            number = self.take()
            if number.kind != "ident" or not number.text.lstrip("-").isdigit():
                raise self.fail(number, f"an integer after '{token.text}'")
            return Requirement(key, Operator(token.text), (number.text,))
        if token.kind == "ident" and token.text in ("in", "notin"):
            return Requirement(key, Operator(token.text), self.value_set())
        raise self.fail(token, "one of '=', '==', '!=', 'in', 'notin', '<', '>', ',' or the end")

    def selector(self) -> Selector:
        if self.peek().kind == "end":
            return Selector()
        requirements = [self.requirement()]
        while True:
            token = self.take()
            if token.kind == "end":
                break
            if token.kind != ",":
                raise self.fail(token, "',' between requirements")
            requirements.append(self.requirement())
        return Selector(tuple(sorted(requirements, key=lambda r: r.key)))


def parse(text: str) -> Selector:
    """Parse a label selector: "app=web,tier!=db,env in (a,b),!key,key"."""
    return _Parser(text).selector()


# ---------------------------------------------------------------------------------------------
# Field selectors.


class FieldRequirement(NamedTuple):
    """`spec.nodeName=n1`: the field at `path` (JSON names, dotted) compared with `value`."""

    path: str
    operator: Operator  # EQUALS or NOT_EQUALS; compares equal to "=" and "!="
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.path, "") == self.value
        return equal if self.operator is Operator.EQUALS else not equal


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _split_term(text: str, term: str) -> tuple[str, Operator, str]:
    for token, operator in (("!=", Operator.NOT_EQUALS), ("==", Operator.EQUALS)):
        if token in term:
            path, value = term.split(token, 1)
            return path, operator, value
    if "=" not in term:
        raise SelectorError(
            f'invalid field selector "{text}": "{term}" is not of the form '
            "path=value, path==value or path!=value"
        )
    path, value = term.split("=", 1)
    return path, Operator.EQUALS, value


def parse_fields(text: str) -> list[FieldRequirement]:
    """Parse a field selector: "spec.nodeName=n1,metadata.namespace!=kube-system".

    An empty value is allowed and meaningful: "spec.nodeName=" selects unscheduled pods.
    """
    if not text.strip():
        return []
    result = []
    for term in _split_unescaped(text, ","):
        path, operator, value = _split_term(text, term)
        path = path.strip()
        if not path or any(not part for part in path.split(".")):
            raise SelectorError(f'invalid field selector "{text}": "{term}" has no field path')
        result.append(FieldRequirement(path, operator, _unescape(value.strip())))
    return result


def fields_match(requirements: list[FieldRequirement], fields: Mapping[str, str]) -> bool:
    """True when every requirement holds for `fields` (path -> value; a missing path is "")."""
    return all(r.matches(fields) for r in requirements)

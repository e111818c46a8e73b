"""Naming objects on the command line: `KIND [NAME...]` or `KIND/NAME ...`, as kubectl reads them.

Invariant: kinds resolve only through `pilothouse.kinds.parse` (so `deploy`, `deployments`,
`Deployment`, `deployments.apps` all work); a word that names no kind, or a mix of the two forms,
is a `UsageError` that says what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from pilothouse import kinds, selectors
from pilothouse.cli.usage import UsageError
from pilothouse.kinds import Kind


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    # Empty: every object of the kind (in scope).
    names: tuple[str, ...] = ()


def parse_targets(words: Sequence[str], *, verb: str) -> list[Target]:
    """`["deploy", "web", "api"]` or `["deploy/web", "po/x"]` as targets, one per kind."""
    if not words:
        raise UsageError(
            f"you must specify the type of resource to {verb}, e.g. "
            f"`pilothouse {verb} deployments` (known: {_known()})"
        )
    if "/" in words[0]:
        grouped: dict[Kind, list[str]] = {}
        for word in words:
            kind_name, slash, name = word.partition("/")
            if not slash or not name:
                raise UsageError(
                    f"there is no need to specify a resource type as a separate argument when "
                    f"passing arguments in resource/name form (got {word!r})"
                )
            grouped.setdefault(_kind(kind_name), []).append(name)
        return [Target(kind, tuple(names)) for kind, names in grouped.items()]
    kind = _kind(words[0])
    names = tuple(words[1:])
    for name in names:
        if "/" in name:
            raise UsageError(
                f"there is no need to specify a resource type as a separate argument when "
                f"passing arguments in resource/name form (got {name!r})"
            )
    return [Target(kind, names)]


def single(words: Sequence[str], *, verb: str) -> tuple[Kind, str]:
    """Exactly one object: `KIND NAME` or `KIND/NAME`."""
    targets = parse_targets(words, verb=verb)
    if len(targets) != 1 or len(targets[0].names) != 1:
        raise UsageError(f"{verb} needs exactly one object: `KIND NAME` or `KIND/NAME`")
    return targets[0].kind, targets[0].names[0]


def selector(text: str | None) -> selectors.Selector:
    """A label selector checked locally, so a typo fails before anything is sent."""
    if not text:
        return selectors.Selector()
    try:
        return selectors.parse(text)
    except selectors.SelectorError as exc:
        raise UsageError(str(exc)) from None


def matches(message: Message, wanted: selectors.Selector) -> bool:
    return wanted.empty or wanted.matches(dict(message.metadata.labels))  # type: ignore[attr-defined]


def _kind(word: str) -> Kind:
    try:
        return kinds.parse(word)
    except kinds.UnknownKind as exc:
        raise UsageError(str(exc)) from None


def _known() -> str:
    return ", ".join(k.info.plural for k in Kind)

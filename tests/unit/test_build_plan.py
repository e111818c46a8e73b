"""The stage planner of `pilothouse build`: stages, targets, global ARGs, shape errors (pure)."""

from __future__ import annotations

import pytest

from pilothouse.cli.build import BuildError
from pilothouse.cli.build.containerfile import parse
from pilothouse.cli.build.plan import SCRATCH, plan

MULTI = """\
ARG BASE=busybox:stable
FROM $BASE AS deps
RUN echo deps
FROM deps AS build
COPY --from=deps /a /a
FROM busybox:stable AS unrelated
RUN echo never
FROM scratch
COPY --from=build /a /a
"""


def test_target_keeps_only_the_stages_it_needs_in_order() -> None:
    p = plan(parse(MULTI))
    assert [s.label for s in p.stages] == ["deps", "build", "3"]
    assert p.target.base == SCRATCH
    assert p.stages[1].base == "stage:0" and p.stages[1].copies_from == (0,)
    assert p.stages[0].base == "busybox:stable", "FROM expands the global ARG's default"


def test_target_flag_and_build_args() -> None:
    p = plan(parse(MULTI), target="deps", build_args={"BASE": "127.0.0.1:5000/base:1"})
    assert [s.label for s in p.stages] == ["deps"]
    assert p.stages[0].base == "127.0.0.1:5000/base:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("RUN echo\n", "Containerfile:1: RUN: the first instruction must be FROM"),
        ("FROM x\nCOPY onlyone\n", "Containerfile:2: COPY: needs at least 2"),
        ("FROM x\nADD https://example.com/f /f\n", "Containerfile:2: ADD: source"),
        ("FROM x AS a\nFROM y AS a\n", "Containerfile:2: FROM: stage name 'a' is already used"),
        ("FROM x\nCOPY --from=1 /a /b\nFROM y\n", "Containerfile:2: COPY: --from=1: only an"),
        ("FROM x\nRUN --network=bridge true\n", "Containerfile:2: RUN: --network=bridge"),
    ],
)
def test_shape_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(BuildError) as err:
        plan(parse(text))
    assert str(err.value).startswith(message), str(err.value)


def test_unknown_target_lists_the_stages() -> None:
    with pytest.raises(BuildError, match=r"no stage named 'nope' .*deps, build, unrelated, 3"):
        plan(parse(MULTI), target="nope")

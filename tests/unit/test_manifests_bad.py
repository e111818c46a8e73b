"""Malformed manifests: each reports its specific problem with its field path; nothing loads.

Each file under tests/data/manifests/bad/ states what a user must see in `# expect:` lines at
its top: "document N: field: message" (a message may be cut short; the rest must follow it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse import manifests

BAD = Path(__file__).resolve().parents[1] / "data" / "manifests" / "bad"
FILES = sorted(BAD.glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ").rstrip("\n")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


def _shown(problem: manifests.Problem) -> str:
    """The problem as the user reads it, without the file name."""
    return str(manifests.Problem("", problem.document, problem.field, problem.message))


def test_there_are_enough_malformed_manifests() -> None:
    assert len(FILES) >= 25, "the malformed-manifest suite lost files"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_malformed_manifest_reports_each_problem_with_its_field(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.load([str(path)])
    problems = caught.value.problems
    shown = [_shown(p) for p in problems]
    assert len(problems) == len(expected), (
        f"{path.name}: expected {len(expected)} problem(s), the user saw:\n" + "\n".join(shown)
    )
    for want in expected:
        assert any(s.startswith(want) for s in shown), (
            f"{path.name}: the user should see\n  {want}\nbut saw:\n  " + "\n  ".join(shown)
        )
    assert all(p.file == str(path) for p in problems), "every problem must name its file"
    assert all(str(p).startswith(f"{path}: ") for p in problems)


def test_error_text_lists_every_problem_one_per_line() -> None:
    path = BAD / "multi-document.yaml"
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.load([str(path)])
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems]
    assert (
        f"{path}: document 4: spec.template.spec.containers[0].imagePullPolicyy: unknown field"
        in lines
    )

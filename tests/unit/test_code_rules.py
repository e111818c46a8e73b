"""Lint and layering rules hold for the whole tree (ruff, import-linter)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"


def test_ruff_format_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, f"files need `ruff format`:\n{result.stdout}{result.stderr}"


def test_layering_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports (import-linter) is not installed; pip install -e '.[test]'")
    result = _run(exe)
    assert result.returncode == 0, f"layering contract broken:\n{result.stdout}{result.stderr}"


def test_documents_point_only_inside_the_repository() -> None:
    """A newcomer who clones the repository has no `../shared/`: links stay inside it."""
    for document in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        text = document.read_text()
        assert "../shared/" not in text, f"{document.name} links outside the repository"
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if "://" in target:
                continue
            path = (document.parent / target).resolve()
            assert path.exists(), f"{document.name} links to {target}, which does not exist"
            assert REPO in path.parents or path == REPO, f"{document.name}: {target} is outside"

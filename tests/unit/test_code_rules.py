"""Lint and layering rules hold for the whole tree (ruff, import-linter)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"


def test_ruff_format_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, f"files need `ruff format`:\n{result.stdout}{result.stderr}"


def test_layering_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports (import-linter) is not installed; pip install -e '.[test]'")
    result = _run(exe)
    assert result.returncode == 0, f"layering contract broken:\n{result.stdout}{result.stderr}"

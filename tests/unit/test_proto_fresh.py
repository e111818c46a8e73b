"""The committed generated code is exactly what proto/generate.py produces from proto/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", REPO / "proto" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    sys.modules["_pilothouse_generate"] = generate
    spec.loader.exec_module(generate)
    written = generate.generate(tmp_path)
    assert written, "proto/generate.py produced nothing"
    stale = []
    for fresh in written:
        rel = fresh.relative_to(tmp_path)
        committed = REPO / rel
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(str(rel))
    assert not stale, f"generated code is stale, run `python proto/generate.py`: {stale}"

"""Regenerate the Python code for the protobuf schema: the one place stubs come from.

Invariant: `pilothouse/v1/*_pb2*.py` are exactly what this script produces from `proto/`
with the pinned grpcio-tools; tests/unit/test_proto_fresh.py fails when they are stale.

Usage: python proto/generate.py [OUT_DIR]   (OUT_DIR defaults to the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def generate(out_dir: Path) -> list[Path]:
    """Generate message, gRPC and typing stubs into `out_dir`; return the files written."""
    sources = sorted(PROTO_ROOT.glob("pilothouse/v1/*.proto"))
    include = Path(protoc.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s.relative_to(PROTO_ROOT)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    package = out_dir / "pilothouse" / "v1"
    init = package / "__init__.py"
    init.write_text(
        '"""Generated protobuf and gRPC code for the pilothouse.v1 schema (proto/)."""\n'
    )
    return [*sorted(package.glob("*_pb2*.py*")), init]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    for path in generate(target):
        print(path.relative_to(target))

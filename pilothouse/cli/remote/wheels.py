"""Pilothouse and its Python dependencies as wheels, built on this machine for copying to hosts.

`build()` runs `pip wheel` on the source tree this CLI runs from, into a cache directory named
by the hash of that tree's sources (`source_digest`), so the same sources are built once and
give byte-identical wheels every time: a host that has them installed needs nothing (the
`WheelSet.digest` is what `install` compares). The host installs only from the copied files
(`pip install --no-index`).

Dependencies come from a pool of wheels on THIS machine (`<cache>/pool`): a build first tries
with the pool alone and no index (no network needed: this machine may reach the hosts but not
the internet, as inside a VM lab's namespace), and only when the pool lacks something asks
pip's index, then keeps the dependencies it got in the pool.

Invariants: a cache entry is complete or absent (built in a temporary directory, renamed); the
build runs on a copy of the sources (`pyproject.toml`, `README.md` and the three packages), so
it leaves nothing in the source tree (no build/ or egg-info) and packs nothing stale from one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_PACKAGES = ("pilothouse", "controlplane", "nodeagent")
_KEEP = 3  # cache entries kept (the newest)


class WheelError(RuntimeError):
    """The wheels could not be built; the message has pip's last lines."""


@dataclass(frozen=True, slots=True)
class WheelSet:
    directory: Path
    files: tuple[Path, ...]
    digest: str  # over every wheel's name and content

    @property
    def pilothouse(self) -> Path:
        return next(f for f in self.files if f.name.startswith("pilothouse-"))


def source_tree() -> Path:
    """The Pilothouse source tree this CLI runs from (it has pyproject.toml and deploy/)."""
    import pilothouse

    root = Path(pilothouse.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").exists() or not (root / "deploy").is_dir():
        raise WheelError(
            f"{root} is not a Pilothouse source tree (no pyproject.toml and deploy/): run "
            "`pilothouse node add` from a checkout installed with deploy/install.sh"
        )
    return root


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"]
    for package in _PACKAGES:
        files += [
            p for p in (root / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pilothouse" / "wheels"


def from_directory(directory: Path) -> WheelSet:
    """The wheels in `directory` (`--wheels`: built elsewhere, or pinned by a test)."""
    found = _wheel_set(directory)
    if not any(f.name.startswith("pilothouse-") for f in found.files):
        raise WheelError(f"{directory} holds no pilothouse-*.whl (and its dependencies' wheels)")
    return found


def _wheel_set(directory: Path) -> WheelSet:
    files = tuple(sorted(directory.glob("*.whl")))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return WheelSet(directory=directory, files=files, digest=digest.hexdigest())


def build(root: Path | None = None, *, cache: Path | None = None) -> WheelSet:
    """The wheels for the source tree at `root` (default: this CLI's), built if not cached."""
    root = root or source_tree()
    cache = cache or cache_dir()
    out = cache / source_digest(root)
    if (out / "complete").exists():
        return _wheel_set(out)
    pool = cache / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(work),
               "--find-links", str(pool)]  # fmt: skip
        source = _copy_sources(root, work / "source")
        # The pool alone, offline; this venv's setuptools builds Pilothouse itself.
        done = _pip([*pip, "--no-index", "--no-build-isolation", str(source)])
        if done.returncode != 0:
            done = _pip([*pip, str(source)])  # pip's index for what the pool lacks
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise WheelError(f"pip wheel {root} failed:\n{tail}")
        for wheel in work.glob("*.whl"):
            if not wheel.name.startswith("pilothouse-") and not (pool / wheel.name).exists():
                shutil.copy2(wheel, pool / wheel.name)
        shutil.rmtree(source)
        (work / "complete").write_text("")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(cache)
    built = _wheel_set(out)
    log.info("wheels.built", directory=str(out), wheels=len(built.files))
    return built


def _copy_sources(root: Path, target: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, target / name)
    for package in _PACKAGES:
        shutil.copytree(root / package, target / package, ignore=skip)
    return target


def _pip(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=1800)


def _prune(cache: Path) -> None:
    entries = sorted(
        (p for p in cache.iterdir() if p.is_dir() and (p / "complete").exists()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in entries[_KEEP:]:
        shutil.rmtree(stale, ignore_errors=True)

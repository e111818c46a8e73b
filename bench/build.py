"""`pilothouse build` beside Buildah on one Containerfile and context: cold, no-change, one-file.

Both builders start from the same offline busybox test image (loaded into each one's store
before timing; nothing is pulled from a network) and build the same context: a WORKDIR, a COPY
of many small files and one larger one, a RUN over them, a COPY of one small file and a RUN
after it. Three cases, each repeated (`--rounds`, median reported):

- cold: an empty cache (a fresh store with only the base image);
- no-change: the same build again (every step cached);
- one-file: one file of the last COPY changed (that COPY and the RUN after it rerun).

pilothouse is timed as a person runs it (the CLI process, wall clock, with Python's bytecode
cached as an installed package has it, even where PYTHONDONTWRITEBYTECODE is set) and also by
its own account of the build (`built … in X s`: without Python's start-up and the CLI's
imports); the difference is the CLI's own cost. Goal: the no-change rebuild at most 0.3 s wall.
Buildah runs as `buildah bud --layers --pull=never --storage-driver vfs` under root with its
default isolation, `--network none` for the RUN steps as pilothouse's default; it is skipped
with a message when not installed (`deploy/install.sh --test` installs it). The last line is
JSON.

Usage: python3 bench/build.py [--rounds 3] [--files 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pilothouse.oci import testimage

BASE = "docker.io/library/busybox:stable"
CONTAINERFILE = f"""\
FROM {BASE}
WORKDIR /app
COPY lib/ /app/lib/
RUN find /app/lib -type f | sort | xargs cat | wc -c > /app/lib.size
COPY app.sh /app/app.sh
RUN sh /app/app.sh > /app/out.txt
CMD ["sh", "/app/app.sh"]
"""


def make_context(root: Path, *, files: int) -> Path:
    ctx = root / "ctx"
    lib = ctx / "lib"
    lib.mkdir(parents=True)
    for i in range(files):
        (lib / f"mod{i:04d}.txt").write_text(f"module {i}\n" * 40)
    (lib / "big.bin").write_bytes(os.urandom(4 << 20))
    (ctx / "app.sh").write_text("echo version 1\n")
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    return ctx


GOAL_NO_CHANGE_S = 0.3


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}… failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, proc.stderr


class Pilothouse:
    name = "pilothouse"

    def __init__(self, work: Path, archive: Path) -> None:
        self.work, self.archive = work, archive
        self.cli = [sys.executable, "-m", "pilothouse.cli.main", "build"]
        self.inner: list[float] = []
        self.env = dict(os.environ, PYTHONPYCACHEPREFIX=str(work / "pycache"))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def fresh(self, n: int) -> None:
        self.root = self.work / f"ph-{n}"
        subprocess.run(
            [*self.cli, "--root", str(self.root), "--load", str(self.archive)],
            check=True,
            capture_output=True,
            env=self.env,
        )

    def build(self, ctx: Path) -> float:
        argv = [*self.cli, "--root", str(self.root), "-t", "bench:1", str(ctx)]
        elapsed, err = timed(argv, self.env)
        match = re.search(r"built sha256:\w+ in ([0-9.]+)s", err)
        self.inner.append(float(match.group(1)) if match else float("nan"))
        return elapsed

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Buildah:
    name = "buildah"

    def __init__(self, work: Path, archive: Path) -> None:
        self.work, self.archive = work, archive

    def _cmd(self) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "root"),
            "--runroot",
            str(self.root / "runroot"),
            "--storage-driver",
            "vfs",
        ]

    def fresh(self, n: int) -> None:
        self.root = self.work / f"bh-{n}"
        subprocess.run(
            [*self._cmd(), "pull", f"oci-archive:{self.archive}"], check=True, capture_output=True
        )

    def build(self, ctx: Path) -> float:
        argv = [*self._cmd(), "bud", "--layers", "--pull=never", "--network", "none"]
        return timed([*argv, "-t", "bench:1", str(ctx)])[0]

    def cleanup(self) -> None:
        subprocess.run([*self._cmd(), "rm", "--all"], capture_output=True, check=False)
        subprocess.run([*self._cmd(), "rmi", "--all", "--force"], capture_output=True, check=False)
        root = self.root
        for mount in sorted(
            (line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()),
            reverse=True,
        ):
            if mount.startswith(str(root)):
                subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)


def run_cases(builder: Pilothouse | Buildah, ctx: Path, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "no_change": [], "one_file": []}
    for n in range(rounds):
        (ctx / "app.sh").write_text("echo version 1\n")
        builder.fresh(n)
        try:
            out["cold"].append(builder.build(ctx))
            out["no_change"].append(builder.build(ctx))
            (ctx / "app.sh").write_text(f"echo version {n + 2}\n")
            out["one_file"].append(builder.build(ctx))
        finally:
            builder.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=300, help="small files in the first COPY")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: RUN steps need namespaces, cgroups and mounts")
    work = Path(tempfile.mkdtemp(prefix="ph-build-bench-"))
    result: dict[str, object] = {"rounds": args.rounds, "files": args.files + 1}
    try:
        archive = testimage.build_test_image(work / "busybox.tar", tag=BASE)
        ctx = make_context(work, files=args.files)

        def median(xs: list[float]) -> float:
            return round(statistics.median(xs), 3)

        ph = Pilothouse(work, archive)
        timings = run_cases(ph, ctx, args.rounds)
        result["pilothouse_s"] = {k: median(v) for k, v in timings.items()}
        inner = {"cold": ph.inner[0::3], "no_change": ph.inner[1::3], "one_file": ph.inner[2::3]}
        result["pilothouse_inner_s"] = {k: median(v) for k, v in inner.items()}
        result["pilothouse_cli_s"] = {  # the CLI's own cost: start-up, imports, exit
            k: round(result["pilothouse_s"][k] - result["pilothouse_inner_s"][k], 3)  # type: ignore[index]
            for k in inner
        }
        result["no_change_goal_met"] = result["pilothouse_s"]["no_change"] <= GOAL_NO_CHANGE_S  # type: ignore[index]
        if shutil.which("buildah"):
            bh = run_cases(Buildah(work, archive), ctx, args.rounds)
            result["buildah_s"] = {k: median(v) for k, v in bh.items()}
            result["ratio_pilothouse_to_buildah"] = {
                k: round(result["pilothouse_s"][k] / result["buildah_s"][k], 2)  # type: ignore[index]
                for k in bh
            }
        else:
            print("buildah is not installed (deploy/install.sh --test): skipping it", flush=True)
            result["buildah_s"] = None
        for case in ("cold", "no_change", "one_file"):
            line = f"{case:>10}: pilothouse {result['pilothouse_s'][case]:.3f}s"  # type: ignore[index]
            line += f" (build itself {result['pilothouse_inner_s'][case]:.3f}s"  # type: ignore[index]
            line += f", CLI {result['pilothouse_cli_s'][case]:.3f}s)"  # type: ignore[index]
            if result["buildah_s"]:
                line += f", buildah {result['buildah_s'][case]:.3f}s"  # type: ignore[index]
            print(line, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

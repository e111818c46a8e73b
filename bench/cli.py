"""How long `pilothouse` takes as a person runs it: start-up, one API call, a no-change build.

Each command runs `--runs` times as its own process (wall clock, as hyperfine measures it) and
the median, fastest and slowest are reported:

- `--version` and `--help`: start-up alone (no verb is imported);
- `get pods`: start-up, a verb, and one List over mutual TLS, against a control plane this
  script starts in a temporary directory (embedded etcd; stopped and removed afterwards);
- `build` with nothing changed: a one-step COPY build whose cache answers every step, in a
  temporary build root loaded with the offline busybox test image (root only: RUN steps need
  runc, and so does the store's layer unpack).

Python's compiled bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, warmed by the first
run, as an installed package has its .pyc files) even where PYTHONDONTWRITEBYTECODE is set;
`--no-bytecode-cache` measures without it (every module compiled from source on every run).

Goals (issue 18): the no-change rebuild at most 0.3 s and `get pods` at most 0.15 s, wall.
`--source DIR` runs the CLI from another checkout (e.g. `git archive HEAD~3 | tar -x -C DIR`)
to compare before and after. The last line is JSON.

Usage: python3 bench/cli.py [--runs 20] [--source DIR] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS = {"build_no_change": 0.3, "get_pods": 0.15}


def cli(source: Path, *, pycache: Path | None) -> tuple[list[str], dict[str, str]]:
    """The CLI's argv and environment. Everything runs from "/" (see `main`), so PYTHONPATH,
    not the working directory, says which checkout's code runs."""
    env = dict(os.environ, PYTHONPATH=str(source))
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return [sys.executable, "-m", "pilothouse.cli.main"], env


def timed(argv: Sequence[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median, fastest and slowest wall time of `runs` runs (one warm-up run first)."""
    samples = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[2:])} failed: {done.stderr.strip()[-400:]}")
        if attempt:
            samples.append(elapsed)
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
    }


@contextmanager
def control_plane(base: list[str], env: dict[str, str], work: Path) -> Iterator[dict[str, str]]:
    """A control plane of its own; yields the CLI's environment pointing at it."""
    data = work / "controlplane"
    log = (work / "controlplane.log").open("w")
    process = subprocess.Popen(
        [*base, "controlplane", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        pointed = dict(env, PILOTHOUSE_CONFIG=str(data / "admin.conf"))
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the control plane exited; see {work / 'controlplane.log'}")
            if (data / "admin.conf").exists():
                probe = subprocess.run([*base, "get", "pods"], env=pointed, capture_output=True)
                if probe.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the control plane did not answer within 60 s")
            time.sleep(0.2)
        yield pointed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def build_root(base: list[str], env: dict[str, str], work: Path) -> list[str]:
    """A build root holding the test image and one cached build; the build's argv."""
    sys.path.insert(0, str(REPO))
    from pilothouse.oci.testimage import build_test_image

    archive = build_test_image(work / "busybox.tar")
    root = work / "build-root"
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "app.sh").write_text("echo hello\n")
    (ctx / "Containerfile").write_text(
        "FROM docker.io/library/busybox:stable\n"
        "COPY app.sh /app/app.sh\n"
        'CMD ["sh", "/app/app.sh"]\n'
    )
    load = [*base, "build", "--root", str(root), "--load", str(archive)]
    subprocess.run(load, env=env, check=True, capture_output=True)
    argv = [*base, "build", "--root", str(root), "-t", "bench-cli:1", str(ctx)]
    subprocess.run(argv, env=env, check=True, capture_output=True)  # the cold build
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--source", type=Path, default=REPO, help="checkout to run the CLI from")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile every run")
    args = parser.parse_args()
    source = args.source.resolve()
    os.chdir("/")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        base, env = cli(source, pycache=None if args.no_bytecode_cache else work / "pycache")
        results["version"] = timed([*base, "--version"], env, args.runs)
        results["help"] = timed([*base, "--help"], env, args.runs)
        with control_plane(base, env, work) as pointed:
            results["get_pods"] = timed([*base, "get", "pods"], pointed, args.runs)
        if os.geteuid() == 0:
            results["build_no_change"] = timed(build_root(base, env, work), env, args.runs)
        else:
            print("build_no_change skipped: building needs root", file=sys.stderr)
    for name, result in results.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"  goal <= {goal} s: {result['median'] <= goal}"
        print(
            f"{name:16} median {result['median']:.3f} s  "
            f"(min {result['min']:.3f}, max {result['max']:.3f}){verdict}"
        )
    about = {"source": str(source), "runs": args.runs, "bytecode_cache": not args.no_bytecode_cache}
    print(json.dumps({**about, **results}))


if __name__ == "__main__":
    main()

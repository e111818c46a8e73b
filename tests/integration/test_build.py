"""`pilothouse build` as a person runs it: real RUN steps in runc, the layer cache, OCI output.

Each test gets its own build store (`--root`) with the offline busybox test image loaded into
it, and builds contexts it writes under tmp_path. What is asserted is what a user sees: the
digest printed, the "N step(s) run" summary, the files and config of the image (read back from
the store's layers, and by skopeo/umoci from Debian where installed), the error lines.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pilothouse.oci import testimage

pytestmark = [pytest.mark.root]

BASE = "busybox:stable"


@dataclass
class Built:
    code: int
    out: str
    err: str

    @property
    def digest(self) -> str:
        match = re.search(r"sha256:[0-9a-f]{64}", self.out)
        assert match, f"no digest printed; stdout={self.out!r} stderr={self.err[-2000:]}"
        return match.group(0)

    @property
    def ran(self) -> int:
        match = re.search(r"\((\d+) step\(s\) run, (\d+) cached\)", self.err)
        assert match, f"no build summary; stderr={self.err[-2000:]}"
        return int(match.group(1))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not shutil.which("runc"):
        pytest.skip("builds need root and runc")
    root = tmp_path / "store"
    archive = tmp_path / "busybox.tar"
    testimage.build_test_image(archive, tag=BASE)
    loaded = pilothouse("build", "--root", str(root), "--load", str(archive))
    assert loaded.code == 0, loaded.err
    yield root
    shutil.rmtree(root, ignore_errors=True)


def pilothouse(*argv: str) -> Built:
    proc = subprocess.run(
        [sys.executable, "-m", "pilothouse.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Built(proc.returncode, proc.stdout, proc.stderr)


def build(store: Path, context: Path, *extra: str) -> Built:
    return pilothouse("build", "--root", str(store), *extra, str(context))


def write(context: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return context


def manifest(store: Path, digest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    blobs = store / "oci" / "blobs" / "sha256"
    doc = json.loads((blobs / digest.split(":")[1]).read_text())
    config = json.loads((blobs / doc["config"]["digest"].split(":")[1]).read_text())
    return doc, config


def image_files(store: Path, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The image's merged files: every layer applied in order, whiteouts honoured."""
    doc, _ = manifest(store, digest)
    files: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    for layer in doc["layers"]:
        raw = (store / "oci" / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
            for member in tar:
                name = member.name.strip("/")
                base = name.rsplit("/", 1)[-1]
                if base.startswith(".wh."):
                    gone = name[: len(name) - len(base)] + base[4:]
                    files = {
                        k: v for k, v in files.items() if k != gone and not k.startswith(gone + "/")
                    }
                    continue
                data = tar.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
                files[name] = (member, data)
    return files


def test_unchanged_rebuild_runs_nothing_and_gives_the_same_digest(
    store: Path, tmp_path: Path
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Containerfile": "FROM busybox:stable\nWORKDIR /app\nCOPY . .\n"
            "RUN sed -i s/world/builder/ hello.txt && echo built > /app/stamp\n"
            'CMD ["cat", "/app/hello.txt"]\n',
            "hello.txt": "hello world\n",
            "sub/data.txt": "data\n",
        },
    )
    first = build(store, ctx, "-t", "app:v1")
    assert first.code == 0, first.err
    assert first.ran == 2
    again = build(store, ctx, "-t", "app:v1")
    assert again.code == 0, again.err
    assert again.ran == 0, f"an unchanged rebuild ran steps:\n{again.err}"
    assert again.digest == first.digest
    os.utime(ctx / "hello.txt", (12345, 12345))
    touched = build(store, ctx, "-t", "app:v1")
    assert (touched.ran, touched.digest) == (0, first.digest), "a new mtime alone rebuilt"

    # Reproducible: a fresh store (no cache at all) makes the very same image.
    other = tmp_path / "other-store"
    assert (
        pilothouse("build", "--root", str(other), "--load", str(tmp_path / "busybox.tar")).code == 0
    )
    fresh = build(other, ctx, "-t", "app:v1")
    assert fresh.code == 0, fresh.err
    assert fresh.ran == 2 and fresh.digest == first.digest, "same inputs gave another digest"

    files = image_files(store, first.digest)
    assert files["app/hello.txt"][1] == b"hello builder\n"
    assert files["app/stamp"][1] == b"built\n"
    built = [name for name in files if name.startswith("app")]
    assert built and all(files[name][0].mtime == 0 for name in built), "layer mtimes not fixed"
    _, config = manifest(store, first.digest)
    assert config["config"]["Cmd"] == ["cat", "/app/hello.txt"]
    assert config["config"]["WorkingDir"] == "/app"
    assert [h.get("created_by") for h in config["history"]][-4:] == [
        "WORKDIR /app",
        "COPY . .",
        "RUN sed -i s/world/builder/ hello.txt && echo built > /app/stamp",
        'CMD ["cat", "/app/hello.txt"]',
    ]


def test_one_file_change_rebuilds_from_that_copy_on(store: Path, tmp_path: Path) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Containerfile": "FROM busybox:stable\nRUN echo base > /base\nCOPY a.txt /a.txt\n"
            "COPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /both\n",
            "a.txt": "a\n",
            "b.txt": "b\n",
        },
    )
    first = build(store, ctx)
    assert first.code == 0 and first.ran == 4, first.err
    (ctx / "b.txt").write_text("B changed\n")
    second = build(store, ctx)
    assert second.code == 0, second.err
    assert second.ran == 2, f"want only COPY b.txt and the RUN after it to run:\n{second.err}"
    before, _ = manifest(store, first.digest)
    after, _ = manifest(store, second.digest)
    assert [x["digest"] for x in after["layers"][:3]] == [x["digest"] for x in before["layers"][:3]]
    assert after["layers"][3:] != before["layers"][3:]
    assert image_files(store, second.digest)["both"][1] == b"a\nB changed\n"


def test_multi_stage_scratch_image_holds_no_layer_of_the_first_stage(
    store: Path, tmp_path: Path
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Containerfile": "FROM busybox:stable AS build\n"
            "RUN mkdir /out && echo artifact > /out/app.txt\n"
            "FROM scratch\nCOPY --from=build /out/app.txt /app.txt\n"
            'COPY --from=build /bin/busybox /bin/sh\nENTRYPOINT ["/bin/sh"]\n',
        },
    )
    result = build(store, ctx, "-t", "tiny:1", "-o", str(tmp_path / "layout"))
    assert result.code == 0, result.err
    doc, config = manifest(store, result.digest)
    base = store / "oci" / "index.json"
    names = json.loads(base.read_text())["manifests"]
    busybox = next(
        m["digest"]
        for m in names
        if m["annotations"]["org.opencontainers.image.ref.name"].endswith("busybox:stable")
    )
    first_stage_layers = {x["digest"] for x in manifest(store, busybox)[0]["layers"]}
    assert len(doc["layers"]) == 2
    assert not first_stage_layers & {x["digest"] for x in doc["layers"]}
    files = image_files(store, result.digest)
    assert set(files) == {"app.txt", "bin", "bin/sh"}, sorted(files)
    assert files["app.txt"][1] == b"artifact\n"
    assert config["config"]["Entrypoint"] == ["/bin/sh"]

    # A standard tool reads the output.
    if shutil.which("skopeo"):
        inspected = subprocess.run(
            ["skopeo", "inspect", f"oci:{tmp_path / 'layout'}:1"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["Digest"] == result.digest
    if shutil.which("umoci"):
        bundle = tmp_path / "bundle"
        unpacked = subprocess.run(
            ["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:1", str(bundle)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert unpacked.returncode == 0, unpacked.stderr
        assert (bundle / "rootfs" / "app.txt").read_text() == "artifact\n"
    if not (shutil.which("skopeo") or shutil.which("umoci")):
        pytest.skip("neither skopeo nor umoci is installed (deploy/install.sh --test)")


def test_run_is_isolated_from_host_processes_network_and_files(store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    ctx = write(
        tmp_path / "ctx",
        {
            "Containerfile": "FROM busybox:stable\n"
            f"RUN ls -d /proc/[0-9]* > /procs; cat /proc/net/dev > /netdev; "
            f"test -e {secret} && echo visible > /secret || echo absent > /secret\n",
        },
    )
    result = build(store, ctx)
    assert result.code == 0, result.err
    files = image_files(store, result.digest)
    procs = files["procs"][1].decode().split()
    assert len(procs) <= 2, f"the step saw other processes: {procs}"
    interfaces = [
        line.split(":")[0].strip()
        for line in files["netdev"][1].decode().splitlines()
        if ":" in line
    ]
    assert interfaces == ["lo"], f"the step saw network interfaces {interfaces}"
    assert files["secret"][1] == b"absent\n", "a file of the host outside the context was visible"

    host = build(
        store,
        write(
            tmp_path / "ctx2",
            {"Containerfile": "FROM busybox:stable\nRUN cat /proc/net/dev > /netdev\n"},
        ),
        "--network",
        "host",
    )
    assert host.code == 0, host.err
    seen = image_files(store, host.digest)["netdev"][1].decode()
    assert seen.count(":") > 1, "--network host did not give the host's interfaces"
    assert not any(p.name.startswith("build-") for p in (store / "run").iterdir()), "bundle left"


def test_features_args_chown_ignore_add_tar_target(store: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "pkg").mkdir(parents=True)
    (ctx / "pkg" / "tool.sh").write_text("echo tool\n")
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tar:
        tar.add(ctx / "pkg" / "tool.sh", arcname="opt/tool.sh")
    write(
        ctx,
        {
            ".containerignore": "*.log\n",
            "debug.log": "noise\n",
            "keep.txt": "kept\n",
            "Containerfile": "ARG VERSION=0\nFROM busybox:stable AS first\nARG VERSION\n"
            "COPY --chown=nobody:nobody --chmod=0640 keep.txt /home/$VERSION/keep.txt\n"
            "COPY . /ctx/\nADD bundle.tar.gz /unpacked/\n"
            'RUN echo "v=$VERSION" > /version\nUSER nobody\nRUN id -u > /tmp/uid\n'
            "FROM first AS second\nRUN echo never > /second\n",
        },
    )
    result = build(store, ctx, "--build-arg", "VERSION=7", "--target", "first")
    assert result.code == 0, result.err
    files = image_files(store, result.digest)
    info, data = files["home/7/keep.txt"]
    assert (data, info.uid, info.gid, info.mode) == (b"kept\n", 65534, 65534, 0o640)
    assert "ctx/debug.log" not in files and "ctx/keep.txt" in files, ".containerignore ignored"
    assert files["unpacked/opt/tool.sh"][1] == b"echo tool\n", "ADD did not unpack the tar"
    assert files["version"][1] == b"v=7\n"
    assert files["tmp/uid"][1] == b"65534\n", "USER did not apply to RUN"
    assert "second" not in files, "--target built a later stage"


@pytest.mark.parametrize(
    ("containerfile", "extra", "expected"),
    [
        (
            "FROM busybox:stable\nRUN true\nBOGUS x\n",
            {},
            "error: Containerfile:3: unknown instruction 'BOGUS'",
        ),
        (
            "FROM busybox:stable\nCOPY ../outside /x\n",
            {},
            "error: Containerfile:2: COPY: source '../outside' is outside the build context",
        ),
        (
            "FROM busybox:stable\nCOPY link /x\n",
            {"link": "->/etc/hostname"},
            "error: Containerfile:2: COPY: source 'link' is a symlink",
        ),
        (
            "FROM busybox:stable\n\nRUN echo first line; echo last line >&2; exit 7\n",
            {},
            "error: Containerfile:3: RUN: `RUN echo first line; echo last line >&2; exit 7` "
            "failed with exit code 7",
        ),
        (
            "FROM busybox:stable\n",
            {".containerignore": "Containerfile\n"},
            "error: .containerignore:1: pattern 'Containerfile' excludes the Containerfile",
        ),
        (
            "FROM 127.0.0.1:9/missing/base:1\n",
            {},
            "error: Containerfile:1: FROM: base image 127.0.0.1:9/missing/base:1 was not found",
        ),
    ],
)
def test_bad_input_is_a_clear_error_naming_file_and_line(
    store: Path, tmp_path: Path, containerfile: str, extra: dict[str, str], expected: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(containerfile)
    for name, text in extra.items():
        if text.startswith("->"):
            (ctx / name).symlink_to(text[2:])
        else:
            (ctx / name).write_text(text)
    result = build(store, ctx)
    assert result.code == 1, result.err
    assert expected in result.err, result.err
    if "exit code 7" in expected:
        assert "| first line" in result.err and "| last line" in result.err
    assert "Traceback" not in result.err


def test_push_then_build_from_the_pushed_image_and_prune(
    store: Path, tmp_path: Path, registry: Any
) -> None:
    ctx = write(tmp_path / "ctx", {"Containerfile": "FROM busybox:stable\nRUN echo v1 > /v\n"})
    name = f"{registry.address}/demo/app:v1"
    pushed = build(store, ctx, "-t", name, "--push")
    assert pushed.code == 0, pushed.err
    assert pushed.out.startswith(f"{name}: digest: sha256:") and "(pushed)" in pushed.out

    # Another store (another machine) builds on it, pulling it from the registry.
    other = tmp_path / "other"
    child = write(tmp_path / "child", {"Containerfile": f"FROM {name}\nRUN cat /v > /copy\n"})
    built = build(other, child)
    assert built.code == 0, built.err
    assert image_files(other, built.digest)["copy"][1] == b"v1\n"

    pruned = pilothouse("build", "--root", str(store), "--prune")
    assert pruned.code == 0 and pruned.out.startswith("pruned "), pruned.err
    rebuilt = build(store, ctx, "-t", name)
    assert rebuilt.ran == 1 and rebuilt.digest == pushed.digest, "after --prune the step reran"

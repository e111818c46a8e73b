"""A tiny busybox test image, built offline from Debian's busybox-static.

`build_test_image(out, tag="busybox:stable")` writes an OCI image-layout archive with one
layer: /bin/busybox, a symlink for every applet (`busybox --list-full`: sh, httpd, sleep, nc,
wget, ps …), /etc/passwd and /etc/group with root and nobody, /tmp (1777), /root, and
/www/index.html for httpd demos. Config: Cmd ["sh"], PATH set, WorkingDir "/".

As a script: `python3 -m pilothouse.oci.testimage OUT.tar [--tag busybox:stable]`.

Invariant: deterministic. Fixed mtimes, owners and order, gzip without timestamp: the same
busybox binary always gives the same layer, config and manifest digests.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from pilothouse.oci import OCIError, sha256_digest
from pilothouse.oci import manifest as m
from pilothouse.oci.archive import write_oci_archive

BUSYBOX = Path("/bin/busybox")
MTIME = 1_700_000_000  # fixed, so the layer digest is stable
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
INDEX_HTML = b"<html><body>hello from the pilothouse busybox image</body></html>\n"


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _applets(busybox: Path) -> list[str]:
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise OCIError(
            f"cannot list busybox applets with {busybox}: {exc}; "
            "install Debian's busybox-static (apt-get install busybox-static)"
        ) from exc
    return sorted({line.strip() for line in out.splitlines() if "/" in line.strip()})


def build_layer(busybox: Path = BUSYBOX) -> bytes:
    """The uncompressed layer tar."""
    binary = busybox.read_bytes()
    applets = [a for a in _applets(busybox) if a != "bin/busybox"]
    dirs = {"bin", "dev", "etc", "proc", "root", "sys", "tmp", "www", "usr", "var"}
    for applet in applets:
        parts = applet.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary))
        for name, data in (
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
            ("www/index.html", INDEX_HTML),
        ):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        for applet in applets:
            tar.addfile(_info(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
    return buf.getvalue()


def build_test_image(out: Path, *, tag: str = "busybox:stable", busybox: Path = BUSYBOX) -> Path:
    """Write the busybox test image as an OCI layout archive at `out`; return `out`."""
    if not busybox.exists() and busybox == BUSYBOX and shutil.which("busybox"):
        busybox = Path(shutil.which("busybox") or BUSYBOX)
    layer = build_layer(busybox)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "pilothouse.oci.testimage"}],
    }
    return one_layer_archive(out, layer=layer, config=config, tag=tag)


def one_layer_archive(
    out: Path, *, layer: bytes, config: dict[str, object], tag: str, level: int = 6
) -> Path:
    """Write an image of one layer (an uncompressed tar, gzipped here at `level`) and this
    config (its rootfs filled in) as an OCI layout archive at `out`, named `tag`."""
    compressed = gzip.compress(layer, compresslevel=level, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {**config, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    config_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    layer_desc = m.Descriptor(m.OCI_LAYER_GZIP, sha256_digest(compressed), len(compressed))
    config_desc = m.Descriptor(m.OCI_CONFIG, sha256_digest(config_raw), len(config_raw))
    manifest = {
        "schemaVersion": 2,
        "mediaType": m.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [layer_desc.to_json()],
    }
    manifest_raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_desc = m.Descriptor(
        m.OCI_MANIFEST,
        sha256_digest(manifest_raw),
        len(manifest_raw),
        platform=m.Platform("linux", "amd64"),
    )
    blobs = {
        layer_desc.digest: compressed,
        config_desc.digest: config_raw,
        manifest_desc.digest: manifest_raw,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_oci_archive(out, blobs=blobs, images=[(manifest_desc, tag)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the busybox test image (OCI archive).")
    parser.add_argument("out", type=Path, help="archive to write, e.g. busybox.tar")
    parser.add_argument("--tag", default="busybox:stable", help="image name (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        path = build_test_image(args.out, tag=args.tag)
    except (OCIError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

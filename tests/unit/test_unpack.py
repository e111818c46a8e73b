"""Layer unpacking refuses hostile archives and applies OCI whiteouts as overlayfs expects."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.oci.unpack import OPAQUE_XATTR, UnsafeLayer, unpack_layer


def entry(
    name: str,
    *,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    link: str = "",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = pax
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under root with its mode, size and content: to prove nothing changed."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            body = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(p)] = (st.st_mode, st.st_size, body)
    return out


@pytest.fixture
def area(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(layer dir, sentinel dir): the sentinel must look the same after every unpack."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_text("original")
    layer = tmp_path / "layers" / "l1"
    layer.mkdir(parents=True)
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    before = snapshot(sentinel)
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    yield layer, sentinel
    assert snapshot(sentinel) == before, "unpacking a layer changed files outside the layer"
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before, (
        "unpacking a layer created files beside the layer directory"
    )
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd, (
        "unpacking a layer changed the host's /etc/passwd"
    )


def unpack(data: bytes, layer: Path) -> object:
    return unpack_layer(io.BytesIO(data), layer)


def test_path_traversal_is_refused(area: tuple[Path, Path]) -> None:
    layer, _ = area
    with pytest.raises(UnsafeLayer, match=r"\.\./sentinel/evil"):
        unpack(make_tar(entry("../../sentinel/evil", data=b"x")), layer)
    with pytest.raises(UnsafeLayer, match="escapes"):
        unpack(make_tar(entry("a/../../../sentinel/evil", data=b"x")), layer)


def test_absolute_path_is_made_relative_to_the_layer(area: tuple[Path, Path]) -> None:
    layer, sentinel = area
    unpack(make_tar(entry(str(sentinel / "evil"), data=b"x")), layer)
    inside = layer / str(sentinel / "evil").lstrip("/")
    assert inside.read_bytes() == b"x", "an absolute member name did not land inside the layer"


def test_write_through_absolute_symlink_is_refused(area: tuple[Path, Path]) -> None:
    layer, sentinel = area
    tar = make_tar(
        entry("esc", kind=tarfile.SYMTYPE, link=str(sentinel)),
        entry("esc/evil", data=b"x"),
    )
    with pytest.raises(UnsafeLayer, match="symlink"):
        unpack(tar, layer)
    assert os.readlink(layer / "esc") == str(sentinel), "absolute symlinks themselves are kept"


def test_write_through_relative_symlink_is_refused(area: tuple[Path, Path]) -> None:
    layer, _ = area
    tar = make_tar(
        entry("esc", kind=tarfile.SYMTYPE, link="../../sentinel"),
        entry("esc/file", data=b"overwritten"),
    )
    with pytest.raises(UnsafeLayer, match="esc/file"):
        unpack(tar, layer)


def test_symlinked_parent_directory_is_refused(area: tuple[Path, Path]) -> None:
    layer, sentinel = area
    tar = make_tar(
        entry("etc", kind=tarfile.DIRTYPE, mode=0o755),
        entry("etc", kind=tarfile.SYMTYPE, link=str(sentinel)),  # replaces the directory
        entry("etc/sub/new", data=b"x"),
    )
    with pytest.raises(UnsafeLayer, match="parent 'etc'"):
        unpack(tar, layer)


def test_regular_file_replaces_a_symlink_without_following_it(area: tuple[Path, Path]) -> None:
    layer, sentinel = area
    tar = make_tar(
        entry("f", kind=tarfile.SYMTYPE, link=str(sentinel / "file")),
        entry("f", data=b"mine"),
    )
    unpack(tar, layer)
    assert (layer / "f").read_bytes() == b"mine"
    assert not (layer / "f").is_symlink()


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../../../../../../etc/passwd", "etc/passwd", "link"]
)
def test_hard_link_outside_the_layer_is_refused(area: tuple[Path, Path], target: str) -> None:
    layer, _ = area
    tar = make_tar(
        entry("link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        entry("pw", kind=tarfile.LNKTYPE, link=target),
        entry("pw", data=b"root::0:0::/:/bin/sh\n"),
    )
    with pytest.raises(UnsafeLayer, match="'pw'"):
        unpack(tar, layer)


def test_hard_link_inside_the_layer_shares_the_inode(area: tuple[Path, Path]) -> None:
    layer, _ = area
    unpack(make_tar(entry("a", data=b"same"), entry("b", kind=tarfile.LNKTYPE, link="a")), layer)
    assert (layer / "a").stat().st_ino == (layer / "b").stat().st_ino


def test_device_nodes_are_skipped(area: tuple[Path, Path]) -> None:
    layer, _ = area
    result = unpack(
        make_tar(
            entry("dev/mem", kind=tarfile.CHRTYPE, dev=(1, 1)),
            entry("dev/sda", kind=tarfile.BLKTYPE, dev=(8, 0)),
            entry("fake-whiteout", kind=tarfile.CHRTYPE, dev=(0, 0)),
            entry("pipe", kind=tarfile.FIFOTYPE),
        ),
        layer,
    )
    assert not (layer / "dev" / "mem").exists(), "a device node from the image was created"
    assert not (layer / "dev" / "sda").exists()
    assert not (layer / "fake-whiteout").exists()
    assert stat.S_ISFIFO((layer / "pipe").lstat().st_mode), "fifos are allowed"
    assert result.skipped == ("dev/mem", "dev/sda", "fake-whiteout")  # type: ignore[attr-defined]


def test_setuid_and_setgid_are_stripped_owner_and_times_kept(area: tuple[Path, Path]) -> None:
    layer, _ = area
    unpack(
        make_tar(
            entry("bin", kind=tarfile.DIRTYPE, mode=0o2755, mtime=1_500_000_000),
            entry("bin/su", data=b"#!", mode=0o4755, uid=1000, gid=1001),
            entry("bin/wall", data=b"#!", mode=0o2755),
            entry("bin/ln", kind=tarfile.SYMTYPE, link="su", uid=7, gid=8),
        ),
        layer,
    )
    su = (layer / "bin" / "su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o755, "setuid bit survived unpacking"
    assert stat.S_IMODE((layer / "bin" / "wall").stat().st_mode) == 0o755, "setgid survived"
    assert (su.st_uid, su.st_gid) == (1000, 1001), "file owner from the tar was not kept"
    assert su.st_mtime == 1_600_000_000
    ln = (layer / "bin" / "ln").lstat()
    assert (ln.st_uid, ln.st_gid) == (7, 8), "symlink owner from the tar was not kept"
    d = (layer / "bin").stat()
    assert stat.S_IMODE(d.st_mode) == 0o2755, "directory setgid (inheritance) is kept"
    assert d.st_mtime == 1_500_000_000, "directory mtime was not restored after its children"


def test_only_user_xattrs_are_applied(area: tuple[Path, Path]) -> None:
    layer, _ = area
    pax = {"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.opaque": "y"}
    unpack(make_tar(entry("d", kind=tarfile.DIRTYPE, mode=0o755, pax=pax)), layer)
    attrs = os.listxattr(layer / "d")
    assert "user.note" in attrs
    assert OPAQUE_XATTR not in attrs, "a trusted.overlay xattr from the tar was applied"


def test_whiteouts_become_overlay_whiteouts(area: tuple[Path, Path]) -> None:
    layer, _ = area
    unpack(
        make_tar(
            entry("a/.wh.gone"),
            entry("b/.wh..wh..opq"),
            entry("b/new", data=b"n"),
            entry("c/kept", data=b"k"),
            entry("c/.wh.kept"),  # same layer has the name: the whiteout does not apply
        ),
        layer,
    )
    st = (layer / "a" / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(layer / "b", OPAQUE_XATTR) == b"y"
    assert (layer / "c" / "kept").read_bytes() == b"k"
    assert not (layer / "a" / ".wh.gone").exists()


@pytest.mark.parametrize("compress", [False, True])
def test_diff_id_is_the_digest_of_the_uncompressed_tar(
    area: tuple[Path, Path], compress: bool
) -> None:
    layer, _ = area
    tar = make_tar(entry("hello", data=b"world" * 1000))
    blob = gzip.compress(tar) if compress else tar
    result = unpack(blob, layer)
    assert result.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()  # type: ignore[attr-defined]


@pytest.mark.root
def test_whiteouts_and_opaque_dirs_hide_lower_layers_in_a_real_overlay(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    unpack(
        make_tar(
            entry("a/keep", data=b"1"),
            entry("a/gone", data=b"2"),
            entry("b/old", data=b"3"),
            entry("c/file", data=b"4"),
            entry("d/sub/deep", data=b"5"),
        ),
        lower,
    )
    unpack(
        make_tar(
            entry("a/.wh.gone"),
            entry("b/.wh..wh..opq"),
            entry("b/new", data=b"6"),
            entry(".wh.d"),
        ),
        upper,
    )
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(mnt)],
        check=True,
    )
    try:
        seen = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert seen == ["a", "a/keep", "b", "b/new", "c", "c/file"], (
        f"the container would see {seen}: whiteouts or opaque directories were not applied"
    )

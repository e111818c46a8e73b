"""`pilothouse cp` out of a container refuses an archive entry that would land outside the
destination: `../`, an absolute name, a link out of it (symbolic or hard), a device; entries
that stay inside pass."""

from __future__ import annotations

import io
import tarfile

import pytest

from pilothouse.cli.copy import UnsafeArchive, check_members


def _member(name: str, *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (_member("d/../../etc/passwd"), "climbs out"),
        (_member("/etc/cron.d/x"), "absolute path"),
        (_member("d/evil", kind=tarfile.SYMTYPE, link="/etc/passwd"), "absolute path"),
        (_member("d/up", kind=tarfile.SYMTYPE, link="../../x"), "links outside"),
        (_member("d/sub/up", kind=tarfile.SYMTYPE, link="../../y"), "links outside"),
        (_member("d/hard", kind=tarfile.LNKTYPE, link="other/file"), "links outside"),
        (_member("d/null", kind=tarfile.CHRTYPE), "device"),
    ],
)
def test_an_entry_outside_the_destination_is_refused(entry: tarfile.TarInfo, why: str) -> None:
    with pytest.raises(UnsafeArchive, match=why) as caught:
        check_members([_member("d", kind=tarfile.DIRTYPE), entry], root="d")
    assert entry.name in str(caught.value), "the refusal names the entry"


def test_entries_inside_pass() -> None:
    check_members(
        [
            _member("d", kind=tarfile.DIRTYPE),
            _member("d/a"),
            _member("d/sub/b"),
            _member("d/sub/link", kind=tarfile.SYMTYPE, link="../a"),
            _member("d/hard", kind=tarfile.LNKTYPE, link="d/a"),
        ],
        root="d",
    )


def test_a_real_archive_with_a_link_out_is_refused() -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        archive.addfile(_member("d", kind=tarfile.DIRTYPE))
        archive.addfile(_member("d/evil", kind=tarfile.SYMTYPE, link="../../../root/.ssh"))
    data.seek(0)
    with tarfile.open(fileobj=data) as archive, pytest.raises(UnsafeArchive):
        check_members(archive.getmembers(), root="d")

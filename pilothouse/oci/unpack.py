"""Unpack one image layer tar into an empty directory, safely; return its diff id.

The one layer unpack of the repository: the node agent's layer store (`nodeagent.images`) and
the image builder (`pilothouse.cli.build`) both unpack through `unpack_layer`. The layer
directory becomes an overlayfs lower dir, so whiteouts are written in overlayfs's own format.
A layer comes from a registry or an archive, so every member is treated as hostile.

POLICY (what happens to each kind of member):
- Names. A leading "/" or "./" is removed (absolute names become relative, as GNU tar and
  containerd do), then the name is normalized lexically; a name that still climbs out of the
  layer ("../x", "a/../../x") aborts the whole layer with `UnsafeLayer` naming the member.
- Parent directories are opened one component at a time, relative to the layer root, with
  O_NOFOLLOW: a member whose parent path crosses a symlink (or a non-directory) aborts the
  layer. Missing parents are created (0755, root). Nothing is ever resolved through a symlink.
- Regular files are created with O_CREAT|O_EXCL|O_NOFOLLOW after removing whatever this layer
  put at that name before (the last entry for a name wins, as in tar).
- Symlinks are created as they are, absolute or relative targets alike (they resolve inside
  the container later); they are never followed while unpacking.
- Hard links must name a regular file extracted earlier from this same layer and not replaced
  since; anything else (a host file like /etc/passwd, a symlink, a missing file, a path
  outside the layer) aborts the layer.
- Character and block devices are SKIPPED (logged, listed in `Unpacked.skipped`): a container
  gets its /dev from the runtime, and a device node from an image would only be a way in. This
  includes char 0:0 from the tar: only this module creates whiteout devices.
- FIFOs are created. Unknown member types abort the layer.
- Permissions: mode bits are kept, except setuid and setgid, which are stripped from every
  non-directory (containers run with noNewPrivileges, so they could only matter on the host);
  setgid on directories (group inheritance) is kept. The builder asks to keep them
  (`keep_setid=True`): a RUN step that touches such a file copies it up, and the image it
  writes must keep the base image's modes. Owners are the tar's numeric uid/gid
  (names are ignored: host /etc/passwd must not remap them). Mtimes are set (directories last).
- Extended attributes from PAX headers: only `user.*` are applied; `trusted.*` and
  `security.*` (fake overlay whiteouts, file capabilities) are dropped.
- OCI whiteouts: `.wh.<name>` becomes an overlayfs whiteout (char device 0:0, made here with
  mknod) unless this layer itself already holds <name> (a whiteout hides lower layers only);
  `.wh..wh..opq` marks its directory opaque (xattr trusted.overlay.opaque=y); other `.wh..wh.`
  names (aufs metadata) are ignored.

Invariant: no byte is written, and no inode is created or changed, outside the target directory,
whatever the archive holds. A refused layer leaves a partial directory that the caller removes.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class LayerError(Exception):
    """A layer could not be unpacked (corrupt, unsupported compression …)."""


class UnsafeLayer(LayerError):
    """A layer member broke the unpack policy; the whole layer is refused."""


@dataclass(frozen=True, slots=True)
class Unpacked:
    diff_id: str  # sha256 of the uncompressed tar stream
    size: int  # uncompressed bytes
    skipped: tuple[str, ...] = ()  # members skipped by policy (device nodes)


class _HashingReader(io.RawIOBase):
    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.hasher = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data


def _decompressed(blob: IO[bytes]) -> IO[bytes]:
    buffered = io.BufferedReader(blob, _CHUNK) if not hasattr(blob, "peek") else blob
    head = buffered.peek(4)[:4]  # type: ignore[attr-defined]
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError as exc:
            raise LayerError(
                "layer is zstd-compressed; install the `zstandard` package to unpack it"
            ) from exc
        return zstandard.ZstdDecompressor().stream_reader(buffered)  # type: ignore[no-any-return]
    return buffered  # type: ignore[return-value]


def clean_name(name: str, *, member: str) -> str:
    """The member's path relative to the layer root, or `UnsafeLayer` if it climbs out."""
    path = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if path == ".." or path.startswith("../"):
        raise UnsafeLayer(f"layer member {member!r}: path escapes the layer directory")
    return path


class _Unpacker:
    def __init__(self, root: Path, *, keep_setid: bool) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.mode_mask = 0o7777 if keep_setid else 0o1777
        self.files: set[str] = set()  # regular files extracted by this layer (hard-link sources)
        self.dir_times: list[tuple[str, int]] = []
        self.skipped: list[str] = []

    def close(self) -> None:
        os.close(self.root_fd)

    # -- walking ----------------------------------------------------------------------------
    def _open_dir(self, parts: list[str], *, member: str, create: bool) -> int:
        """An fd for the directory `parts` under the root; never crosses a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[: i + 1])
                        raise UnsafeLayer(
                            f"layer member {member!r}: parent {where!r} is a symlink or not a "
                            "directory; writing through it is refused"
                        ) from exc
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _clear(self, pfd: int, base: str, path: str, *, keep_dir: bool) -> bool:
        """Remove what this layer put at `path` before; True if a directory was kept."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        self.files.discard(path)
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(base, dir_fd=pfd)
            prefix = path + "/"
            self.files = {f for f in self.files if not f.startswith(prefix)}
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    # -- members ----------------------------------------------------------------------------
    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        path = clean_name(member.name, member=member.name)
        if path == ".":
            return
        parts = path.split("/")
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, member=member.name)
            return
        if member.ischr() or member.isblk():
            self.skipped.append(member.name)
            log.warning("layer.device_skipped", member=member.name)
            return
        known = (member.isdir(), member.isreg(), member.issym(), member.islnk(), member.isfifo())
        if not any(known):
            raise UnsafeLayer(f"layer member {member.name!r}: unsupported type {member.type!r}")
        pfd = self._open_dir(parts[:-1], member=member.name, create=True)
        try:
            if member.isdir():
                self._dir(pfd, base, path, member)
            elif member.isreg():
                self._file(pfd, base, path, tar, member)
            elif member.issym():
                self._symlink(pfd, base, path, member)
            elif member.islnk():
                self._hardlink(pfd, base, path, member)
            else:
                self._clear(pfd, base, path, keep_dir=False)
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self._owner_times(pfd, base, member)
                os.chmod(base, member.mode & self.mode_mask, dir_fd=pfd)  # a fifo we just made
        finally:
            os.close(pfd)

    def _dir(self, pfd: int, base: str, path: str, member: tarfile.TarInfo) -> None:
        if not self._clear(pfd, base, path, keep_dir=True):
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        try:
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o3777)  # setgid (inheritance) kept, setuid dropped
            _user_xattrs(fd, member)
        finally:
            os.close(fd)
        self.dir_times.append((path, int(member.mtime * 1e9)))

    def _file(
        self, pfd: int, base: str, path: str, tar: tarfile.TarFile, member: tarfile.TarInfo
    ) -> None:
        self._clear(pfd, base, path, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(member)
            if src is not None:
                with src, os.fdopen(os.dup(fd), "wb", closefd=True) as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & self.mode_mask)
            _user_xattrs(fd, member)
            ns = int(member.mtime * 1e9)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.files.add(path)

    def _symlink(self, pfd: int, base: str, path: str, member: tarfile.TarInfo) -> None:
        if not member.linkname:
            raise UnsafeLayer(f"layer member {member.name!r}: symlink with an empty target")
        self._clear(pfd, base, path, keep_dir=False)
        os.symlink(member.linkname, base, dir_fd=pfd)
        self._owner_times(pfd, base, member)

    def _hardlink(self, pfd: int, base: str, path: str, member: tarfile.TarInfo) -> None:
        target = clean_name(member.linkname, member=member.name)
        if target not in self.files:
            raise UnsafeLayer(
                f"layer member {member.name!r}: hard link to {member.linkname!r}, which is not "
                "a regular file extracted earlier from this layer"
            )
        if target == path:
            return
        tparts = target.split("/")
        tfd = self._open_dir(tparts[:-1], member=member.name, create=False)
        try:
            self._clear(pfd, base, path, keep_dir=False)
            os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.files.add(path)

    def _whiteout(self, parts: list[str], *, member: str) -> None:
        base = parts[-1]
        if base == OPAQUE:
            fd = self._open_dir(parts[:-1], member=member, create=True)
            try:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs metadata (.wh..wh.plnk …): meaningless to overlayfs
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise UnsafeLayer(f"layer member {member!r}: whiteout of an invalid name")
        pfd = self._open_dir(parts[:-1], member=member, create=True)
        try:
            try:
                os.stat(hidden, dir_fd=pfd, follow_symlinks=False)
                return  # this layer has the name itself: a whiteout hides lower layers only
            except FileNotFoundError:
                pass
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        finally:
            os.close(pfd)

    def _owner_times(self, pfd: int, base: str, member: tarfile.TarInfo) -> None:
        os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        ns = int(member.mtime * 1e9)
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory mtimes last (creating children changed them); deepest first."""
        for path, ns in sorted(self.dir_times, key=lambda t: -t[0].count("/")):
            parts = path.split("/")
            try:
                pfd = self._open_dir(parts[:-1], member=path, create=False)
            except (UnsafeLayer, OSError):
                continue  # replaced later in the layer; nothing to date
            try:
                os.utime(parts[-1], ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
            except OSError:
                pass
            finally:
                os.close(pfd)


def _user_xattrs(fd: int, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr.user."):
            os.setxattr(fd, key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape"))


def unpack_layer(blob: IO[bytes], dest: Path, *, keep_setid: bool = False) -> Unpacked:
    """Unpack the layer tar read from `blob` (gzip, zstd or plain) into the empty dir `dest`.

    Raises `UnsafeLayer` for a policy violation and `LayerError` for a corrupt archive; either
    way `dest` is left partial and the caller removes it.
    """
    reader = _HashingReader(_decompressed(blob))
    unpacker = _Unpacker(dest, keep_setid=keep_setid)
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    unpacker.add(tar, member)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise LayerError(f"layer archive is corrupt: {exc}") from exc
        unpacker.finish()
        while reader.read(_CHUNK):
            pass  # the tar's end padding is part of the diff id
    finally:
        unpacker.close()
    return Unpacked(
        diff_id="sha256:" + reader.hasher.hexdigest(),
        size=reader.size,
        skipped=tuple(unpacker.skipped),
    )

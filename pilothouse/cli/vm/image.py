"""The VM image: Debian 12 built with mmdebstrap from Debian's packages, cached by its recipe.

`Recipe` says everything that makes an image (suite, mirror, packages, the files written into
it, its size); `Recipe.key()` hashes all of it, and `ensure(recipe)` returns the cached
`Image` with that key or builds it. A build happens in a temporary directory beside the cache
entry and is renamed into place only when complete, under a lock, so two callers never build
the same image twice and a crashed build leaves nothing that looks finished.

The image holds, besides Debian's minimal system (`--variant=apt`):
- the kernel and initrd (`linux-image-amd64`), copied out beside the disk so QEMU boots them
  directly (`-kernel`, no boot loader);
- systemd with systemd-networkd; the address comes from the kernel's `ip=` argument through
  systemd-network-generator, the host name from `systemd.hostname=`;
- sshd with no host keys (each machine's comes with its seed, see `seed`);
- what an agent runs on (runc, conmon, CNI plugins, nftables, iptables, busybox-static,
  python3 with venv) and etcd for a control plane, so guests need no package mirror.

Invariants: the disk image is never written after it is built (machines boot overlays of it);
the cache keeps the two newest images and removes older ones when it builds another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pilothouse.cli.vm import guest

log = structlog.get_logger(__name__)

RECIPE_VERSION = 3  # bump when `build` changes what it makes from the same recipe
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# What an agent needs on a node (deploy/install.sh's list without the registry), the
# control plane's etcd, and what the machine needs to boot and be reached.
AGENT_PACKAGES = (
    "runc",
    "conmon",
    "containernetworking-plugins",
    "busybox-static",
    "iproute2",
    "iptables",
    "nftables",
    "conntrack",
    "python3",
    "python3-venv",
    "ca-certificates",
    "etcd-server",
)
SYSTEM_PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "kmod",
    "openssh-server",
    "procps",
    "sudo",
    "zstd",
)


class ImageError(RuntimeError):
    """The image could not be built; the message names the step and its output."""


@dataclass(frozen=True, slots=True)
class Recipe:
    """Everything that makes an image; equal recipes make interchangeable images."""

    suite: str = "bookworm"
    mirror: str = field(default_factory=lambda: os.environ.get("PILOTHOUSE_VM_MIRROR", ""))
    packages: tuple[str, ...] = SYSTEM_PACKAGES + AGENT_PACKAGES
    size_mib: int = 4096

    def key(self) -> str:
        text = json.dumps(
            {
                "version": RECIPE_VERSION,
                "suite": self.suite,
                "mirror": self.mirror or DEFAULT_MIRROR,
                "packages": sorted(self.packages),
                "size_mib": self.size_mib,
                "files": guest.files(),
                "units": guest.ENABLE,
                "masks": guest.MASK,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Image:
    """A built image: the disk (raw ext4, read-only), its kernel and initrd, and facts."""

    directory: Path
    key: str
    build_seconds: float
    kernel_release: str

    @property
    def disk(self) -> Path:
        return self.directory / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def cache_dir() -> Path:
    """Where images are kept: $PILOTHOUSE_VM_CACHE, else ~/.cache/pilothouse/vm."""
    given = os.environ.get("PILOTHOUSE_VM_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pilothouse" / "vm"


def missing_tools() -> list[str]:
    """The programs a build needs that are not installed (their Debian packages named)."""
    needed = {"mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs", "qemu-img": "qemu-utils"}
    return [f"{tool} ({package})" for tool, package in needed.items() if not shutil.which(tool)]


def cached(recipe: Recipe, *, root: Path | None = None) -> Image | None:
    """The finished image for `recipe`, if the cache holds one."""
    directory = (root or cache_dir()) / recipe.key()
    facts = directory / "image.json"
    if not facts.exists():
        return None
    data = json.loads(facts.read_text())
    return Image(
        directory=directory,
        key=recipe.key(),
        build_seconds=float(data["build_seconds"]),
        kernel_release=str(data["kernel_release"]),
    )


def ensure(recipe: Recipe | None = None, *, root: Path | None = None) -> Image:
    """The image for `recipe`, built now if the cache has none (minutes; once per recipe)."""
    recipe = recipe or Recipe()
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if (found := cached(recipe, root=root)) is not None:
        return found
    if missing := missing_tools():
        raise ImageError(
            "cannot build the VM image: missing " + ", ".join(missing) + " (deploy/install.sh "
            "--test installs them)"
        )
    with _locked(root / f"{recipe.key()}.lock"):
        if (found := cached(recipe, root=root)) is not None:
            return found  # built by another caller while this one waited
        return _build(recipe, root=root)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], *, step: str, timeout: float = 1800) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ImageError(f"{step}: no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ImageError(f"{step} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _build(recipe: Recipe, *, root: Path) -> Image:
    started = time.monotonic()
    key = recipe.key()
    work = Path(tempfile.mkdtemp(prefix=f"{key}.build-", dir=root))
    try:
        rootfs = work / "rootfs"
        log.info("vm.image_building", key=key, packages=len(recipe.packages))
        _run(
            [
                "mmdebstrap",
                "--variant=apt",
                "--components=main",
                "--include=" + ",".join(recipe.packages),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--aptopt=APT::Install-Recommends false",
                recipe.suite,
                str(rootfs),
                recipe.mirror or DEFAULT_MIRROR,
            ],
            step="mmdebstrap",
        )
        release = _customize(rootfs)
        out = work / "image"
        out.mkdir()
        shutil.copy2(rootfs / "boot" / f"vmlinuz-{release}", out / "vmlinuz")
        shutil.copy2(rootfs / "boot" / f"initrd.img-{release}", out / "initrd.img")
        _run(
            [
                "mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-E", "root_owner=0:0",
                "-d", str(rootfs), str(out / "disk.raw"), f"{recipe.size_mib}M",
            ],
            step="mke2fs",
        )  # fmt: skip
        seconds = round(time.monotonic() - started, 1)
        facts = {"build_seconds": seconds, "kernel_release": release, "recipe": key}
        (out / "image.json").write_text(json.dumps(facts, indent=2) + "\n")
        (out / "disk.raw").chmod(0o444)
        final = root / key
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
        log.info("vm.image_built", key=key, seconds=seconds, kernel=release)
        _prune(root, keep=final)
        return Image(directory=final, key=key, build_seconds=seconds, kernel_release=release)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prune(root: Path, *, keep: Path, count: int = 2) -> None:
    """Remove all but the newest `count` images (each is most of a GiB); `keep` stays."""
    images = sorted(
        (p for p in root.iterdir() if p.is_dir() and (p / "image.json").exists()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in images[count:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            (root / f"{old.name}.lock").unlink(missing_ok=True)


def _customize(rootfs: Path) -> str:
    """Write the guest's files, enable and mask units; the kernel release installed."""
    for relative, (mode, text) in guest.files().items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    for key in rootfs.glob("etc/ssh/ssh_host_*"):
        key.unlink()  # each machine gets its own with its seed
    machine_id = rootfs / "etc" / "machine-id"
    machine_id.write_text("")  # made at first boot, so machines differ
    _run(["chroot", str(rootfs), "systemctl", "enable", *guest.ENABLE], step="systemctl enable")
    _run(["chroot", str(rootfs), "systemctl", "mask", *guest.MASK], step="systemctl mask")
    for unit in guest.DISABLE:
        with contextlib.suppress(ImageError):
            _run(["chroot", str(rootfs), "systemctl", "disable", unit], step="systemctl disable")
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError("mmdebstrap installed no kernel (linux-image-amd64)")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    return kernels[-1].name.removeprefix("vmlinuz-")

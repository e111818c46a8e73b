"""KVM or emulation (TCG): chosen by booting the image once, not by the presence of /dev/kvm.

`/dev/kvm` can exist and still not run a stock kernel (a nested-virtualisation module that
only runs specially built guests hangs Debian's kernel), so `choose` boots the image under KVM
with no network and waits for the seed unit's mark on the serial console: seen within
`PROBE_SECONDS`, KVM works; otherwise emulation it is. The answer is remembered for this boot of
this machine (by /proc's boot_id), this QEMU and this image, so the probe runs once.

`PILOTHOUSE_VM_ACCEL=kvm|tcg` skips the probe.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import structlog

from pilothouse.cli.vm import guest
from pilothouse.cli.vm.image import Image

log = structlog.get_logger(__name__)

PROBE_SECONDS = 45.0
KVM, TCG = "kvm", "tcg"


def choose(image: Image, *, cache: Path) -> str:
    """ "kvm" when a boot under KVM reaches user space, else "tcg" (remembered; see above)."""
    forced = os.environ.get("PILOTHOUSE_VM_ACCEL", "").strip().lower()
    if forced in (KVM, TCG):
        return forced
    if not _kvm_device_opens():
        return TCG
    key = _probe_key(image)
    remembered = cache / f"accel-{key}.json"
    if remembered.exists():
        return str(json.loads(remembered.read_text())["accel"])
    accel, seconds = probe(image)
    remembered.write_text(json.dumps({"accel": accel, "probe_seconds": seconds}) + "\n")
    return accel


def _kvm_device_opens() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _probe_key(image: Image) -> str:
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    version = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=30
    ).stdout.split("\n", 1)[0]
    digest = hashlib.sha256(version.encode()).hexdigest()[:8]
    return f"{boot_id[:8]}-{digest}-{image.key}"


def probe(image: Image) -> tuple[str, float]:
    """Boot the image under KVM (a throw-away snapshot, no network); ("kvm"|"tcg", seconds)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phvm-probe-") as work:
        serial = Path(work) / "serial.log"
        argv = [
            "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256",
            "-nodefaults", "-no-user-config", "-display", "none", "-snapshot",
            "-serial", f"file:{serial}",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 no_timer_check quiet "
                       "systemd.show_status=false",
            "-drive", f"file={image.disk},if=virtio,format=raw",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while time.monotonic() - started < PROBE_SECONDS and process.poll() is None:
                if serial.exists() and guest.SEEDED_MARK in serial.read_text(errors="replace"):
                    seconds = round(time.monotonic() - started, 1)
                    log.info("vm.accel_probe", accel=KVM, seconds=seconds)
                    return KVM, seconds
                time.sleep(0.5)
        finally:
            process.kill()
            process.wait()
    seconds = round(time.monotonic() - started, 1)
    log.info("vm.accel_probe", accel=TCG, seconds=seconds, note="KVM did not boot the image")
    return TCG, seconds

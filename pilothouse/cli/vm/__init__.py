"""Disposable clusters of QEMU virtual machines on one Linux machine, for tests and for people.

The CLI owns this package (neither process imports it). `image` builds a Debian 12 disk image
with mmdebstrap from Debian's packages (kernel, systemd, sshd and what an agent runs on), cached
on disk by the hash of its recipe; `accel` chooses KVM or QEMU's emulation (TCG) by a boot probe;
`seed` makes each machine's SSH host key and the files handed to it at boot; `network` makes a
network namespace with a bridge and one tap per machine; `machine` boots, kills and restarts one
QEMU process; `cluster` puts it together and removes everything again, also after a failure.

Vocabulary, used the same way in every module here:
- *image*: the cached base disk (a raw ext4 file system) with its kernel and initrd beside it;
  never written to: every machine boots a copy-on-write overlay of it (`qemu-img -b`).
- *machine*: one QEMU process with its overlay disk, serial log, tap and address.
- *seed*: the files a machine gets at boot through QEMU's fw_cfg (its SSH host key, the
  authorized key, optional simulation flags), unpacked by a unit baked into the image before
  sshd starts. The same seed is given on every boot, so a machine keeps its host key.
- *lab*: the network namespace, bridge and machines of one cluster; guest addresses exist only
  inside the namespace, and commands that talk to the guests run there (`Lab.command`).

Guests have no route to the internet: everything an agent needs is baked into the image, and
Pilothouse itself reaches them as wheels copied by `pilothouse node add`.
"""

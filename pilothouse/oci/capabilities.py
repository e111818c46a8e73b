"""Linux capabilities a container gets by default: Docker's default set.

Role: one list for every OCI config Pilothouse writes: pods' containers
(`nodeagent.runtime.ocispec`) and the build command's RUN steps (`pilothouse.cli.build`),
so a RUN step runs with exactly what a pod would get. Invariant: the order and contents are
moby's `oci/caps/defaults.go`.
"""

from __future__ import annotations

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

"""A pod's and its containers' security settings: seccomp profiles (`securityContext`).

Supported: `seccompProfile.type` "RuntimeDefault" (Docker's default profile; what a container
gets when nothing is set) and "Unconfined" (no filter; whether a cluster allows it is
`validation.policy`'s decision). "Localhost" (a profile file on the node) is Kubernetes' but
not supported here, and is refused rather than silently run under another profile.

`hostUsers: false` (a user namespace of the pod's own) is refused too, rather than run with the
node's users: measured on runc 1.1 and Linux 6.x, runc runs a container in a user namespace,
but the image's files (owned by root on the node) then appear as nobody inside, so its root
cannot write its own root file system; mapping them needs overlayfs over idmapped layers, which
the kernel allows only when the mounter itself is mapped (not done yet).
"""

from __future__ import annotations

from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

RUNTIME_DEFAULT = "RuntimeDefault"
UNCONFINED = "Unconfined"
LOCALHOST = "Localhost"
SECCOMP_TYPES = (LOCALHOST, RUNTIME_DEFAULT, UNCONFINED)


HOST_USERS_UNSUPPORTED = (
    "user namespaces (hostUsers: false) are not supported by Pilothouse yet; remove it (or set "
    "it to true) to run the pod with the node's users"
)


def pod(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    """The pod's securityContext and each container's, and hostUsers."""
    if spec.HasField("host_users") and not spec.host_users:
        found.forbidden(f"{path}.hostUsers", HOST_USERS_UNSUPPORTED)
    if spec.HasField("security_context"):
        context = spec.security_context
        if context.HasField("seccomp_profile"):
            seccomp(found, context.seccomp_profile, f"{path}.securityContext.seccompProfile")
    for i, container in enumerate(spec.containers):
        if container.HasField("security_context"):
            context = container.security_context
            if context.HasField("seccomp_profile"):
                seccomp(
                    found,
                    context.seccomp_profile,
                    f"{path}.containers[{i}].securityContext.seccompProfile",
                )


def seccomp(found: Findings, profile: objects_pb2.SeccompProfile, path: str) -> None:
    if not profile.type:
        found.required(f"{path}.type")
    elif profile.type not in SECCOMP_TYPES:
        found.unsupported(f"{path}.type", profile.type, SECCOMP_TYPES)
    elif profile.type == LOCALHOST:
        found.forbidden(
            f"{path}.type",
            "Localhost seccomp profiles are not supported by Pilothouse: use RuntimeDefault "
            "(the default) or, where the cluster allows it, Unconfined",
        )
    if profile.localhost_profile and profile.type != LOCALHOST:
        found.forbidden(
            f"{path}.localhostProfile", "can only be set when seccomp type is Localhost"
        )


def effective_seccomp(spec: objects_pb2.PodSpec, container: objects_pb2.Container) -> str:
    """The seccomp profile type a container runs under: its own, else the pod's, else the
    default (RuntimeDefault)."""
    if container.security_context.seccomp_profile.type:
        return container.security_context.seccomp_profile.type
    return spec.security_context.seccomp_profile.type or RUNTIME_DEFAULT

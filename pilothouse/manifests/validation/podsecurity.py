"""A pod's and its containers' securityContext beyond seccomp (which is `security`'s):
users and groups, capabilities, privilege escalation, read-only root, sysctls, privileged.

Rules (core/v1 validation, apimachinery's wording):
- runAsUser, runAsGroup, fsGroup and supplementalGroups are ids between 0 and 2147483647;
- a capability is a Linux capability name, with or without the "CAP_" prefix, or "ALL";
- `allowPrivilegeEscalation: false` excludes `privileged: true` and adding CAP_SYS_ADMIN;
- sysctls: well-formed, unique names, each namespaced and in Kubernetes' safe set
  (`SAFE_SYSCTLS`); any other is Forbidden with its name (a node cannot set it for one pod).
`privileged: true` is a question of cluster policy, not syntax: `privileged(...)` reports it
for `policy` (Forbidden unless the control plane runs with --allow-privileged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

MAX_ID = 2**31 - 1
# Linux capabilities (include/uapi/linux/capability.h, through CAP_CHECKPOINT_RESTORE).
CAPABILITIES = frozenset(
    {
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYSLOG",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "WAKE_ALARM",
    }
)
ALL = "ALL"
# Kubernetes' safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go): namespaced, and unable to
# affect other pods or the node.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_syncookies",
    }
)
_SYSCTL = re.compile(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
_SYSCTL_MESSAGE = (
    "must have at most 253 characters and match regex "
    "^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"
)


def capability_name(name: str) -> str:
    """ "NET_ADMIN" for "NET_ADMIN", "CAP_NET_ADMIN" or "net_admin"; "ALL" stays."""
    upper = name.upper()
    return upper.removeprefix("CAP_")


def pod(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    """The pod's securityContext and every container's (init containers included)."""
    if spec.HasField("security_context"):
        context = spec.security_context
        where = f"{path}.securityContext"
        _ids(found, context, where)
        if context.HasField("fs_group"):
            _id(found, f"{where}.fsGroup", context.fs_group)
        for i, group in enumerate(context.supplemental_groups):
            _id(found, f"{where}.supplementalGroups[{i}]", group)
        policies = ("Always", "OnRootMismatch")
        if context.fs_group_change_policy and context.fs_group_change_policy not in policies:
            found.unsupported(
                f"{where}.fsGroupChangePolicy", context.fs_group_change_policy, policies
            )
        _sysctls(found, context.sysctls, f"{where}.sysctls")
    for i, container in enumerate((*spec.init_containers, *spec.containers)):
        init = i < len(spec.init_containers)
        index = i if init else i - len(spec.init_containers)
        where = f"{path}.{'initContainers' if init else 'containers'}[{index}].securityContext"
        if container.HasField("security_context"):
            _container(found, container.security_context, where)


def _container(found: Findings, context: objects_pb2.SecurityContext, path: str) -> None:
    _ids(found, context, path)
    added = []
    for field in ("add", "drop"):
        for i, name in enumerate(getattr(context.capabilities, field)):
            normal = capability_name(name)
            if normal != ALL and normal not in CAPABILITIES:
                found.invalid(
                    f"{path}.capabilities.{field}[{i}]",
                    name,
                    'not a Linux capability (e.g. "NET_ADMIN", "SYS_TIME", or "ALL" for every one)',
                )
            elif field == "add":
                added.append(normal)
    if context.HasField("allow_privilege_escalation") and not context.allow_privilege_escalation:
        if context.privileged:
            found.invalid(
                f"{path}.allowPrivilegeEscalation",
                False,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            )
        if "SYS_ADMIN" in added or ALL in added:
            found.invalid(
                f"{path}.allowPrivilegeEscalation",
                False,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` "
                "CAP_SYS_ADMIN",
            )


def _ids(found: Findings, context: objects_pb2.SecurityContext, path: str) -> None:
    for field, json_name in (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup")):
        if context.HasField(field):
            _id(found, f"{path}.{json_name}", getattr(context, field))


def _id(found: Findings, field: str, value: int) -> None:
    if not 0 <= value <= MAX_ID:
        found.invalid(field, value, f"must be between 0 and {MAX_ID}, inclusive")


def _sysctls(found: Findings, sysctls: Iterable[objects_pb2.Sysctl], path: str) -> None:
    seen: set[str] = set()
    for i, sysctl in enumerate(sysctls):
        where = f"{path}[{i}].name"
        name = sysctl.name
        if not name:
            found.required(where)
            continue
        if len(name) > 253 or not _SYSCTL.match(name):
            found.invalid(where, name, _SYSCTL_MESSAGE)
            continue
        canonical = name.replace("/", ".")
        if canonical in seen:
            found.duplicate(where, name)
        seen.add(canonical)
        if canonical not in SAFE_SYSCTLS:
            found.forbidden(
                where,
                f'sysctl "{name}" is not in the safe set this cluster sets for a pod (it is '
                "not namespaced, or could affect other pods): " + ", ".join(sorted(SAFE_SYSCTLS)),
            )


def privileged(found: Findings, spec: objects_pb2.PodSpec, path: str) -> None:
    """Every `privileged: true` of the pod's containers, as Forbidden (for cluster policy)."""
    for i, container in enumerate((*spec.init_containers, *spec.containers)):
        if not container.security_context.privileged:
            continue
        init = i < len(spec.init_containers)
        index = i if init else i - len(spec.init_containers)
        found.forbidden(
            f"{path}.{'initContainers' if init else 'containers'}[{index}]"
            ".securityContext.privileged",
            "privileged containers are not allowed on this cluster (they get every capability "
            "and the node's devices); an admin may allow them with the control plane's and "
            "the nodes' --allow-privileged",
        )

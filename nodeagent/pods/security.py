"""What this node allows a pod's containers beyond its spec: its administrator's decisions.

The control plane refuses the same settings at apply (`pilothouse.manifests.validation.policy`)
unless its own flags allow them; the agent checks again with flags of the same names, so a pod
that reaches a node some other way (a standalone agent, an object stored before the check, a
control plane run with looser flags) is still held to the node's rules:
- `--allow-unconfined-seccomp`: without it, a container whose effective seccompProfile is
  Unconfined is not created (CreateContainerConfigError, saying why and which flag);
- `--allow-probe-host`: without it, a probe naming a host other than its pod fails without
  connecting (`nodeagent.probes.handlers`).

Invariant: a container runs under Docker's default seccomp profile unless its own or its
pod's securityContext asks for Unconfined and the node allows that.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.pods.specs import SpecError
from nodeagent.runtime import Seccomp
from pilothouse.manifests.validation.security import (
    HOST_USERS_UNSUPPORTED,
    UNCONFINED,
    effective_seccomp,
)
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class NodePolicy:
    allow_probe_host: bool = False  # --allow-probe-host
    allow_unconfined_seccomp: bool = False  # --allow-unconfined-seccomp
    allow_privileged: bool = False  # --allow-privileged (securityContext.privileged)


def check_host_users(pod: objects_pb2.Pod) -> None:
    """SpecError for `hostUsers: false`: no user namespaces yet (see the validation's note);
    never run such a pod with the node's users instead."""
    if pod.spec.HasField("host_users") and not pod.spec.host_users:
        raise SpecError(HOST_USERS_UNSUPPORTED)


def seccomp_of(
    pod: objects_pb2.Pod, container: objects_pb2.Container, *, policy: NodePolicy
) -> Seccomp:
    """The seccomp filter `container` runs under; SpecError when the node refuses it."""
    kind = effective_seccomp(pod.spec, container)
    if kind == UNCONFINED:
        if not policy.allow_unconfined_seccomp:
            raise SpecError(
                f'container "{container.name}": seccompProfile Unconfined is not allowed on '
                "this node (an admin may allow it with the agent's --allow-unconfined-seccomp)"
            )
        return Seccomp.UNCONFINED
    try:
        return Seccomp(kind)
    except ValueError:
        raise SpecError(
            f'container "{container.name}": seccomp profile type "{kind}" is not supported '
            "(RuntimeDefault or Unconfined)"
        ) from None

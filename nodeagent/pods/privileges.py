"""From a pod's and container's securityContext to the user and privileges it runs with.

Rules (the kubelet's and containerd's):
- user: the container's runAsUser, else the pod's, else the image's USER; group likewise with
  runAsGroup, else the primary group of that user in the image (0 when it has none);
- runAsNonRoot refuses to start a container that would run as uid 0, with the kubelet's
  messages (`container has runAsNonRoot and image will run as root (pod: "web_default(uid)",
  container: app)`), and one whose image USER is a name it cannot check;
- supplementary groups: supplementalGroups, then fsGroup;
- capabilities: the runtime's default set; `drop: [ALL]` empties it and `add: [ALL]` fills it
  before the other entries are added and then dropped; names take "CAP_" or not;
- noNewPrivileges unless allowPrivilegeEscalation is true (without it: unless the container
  is privileged or adds CAP_SYS_ADMIN, as Kubernetes defaults it);
- readOnlyRootFilesystem, the pod's sysctls ("a/b" written "a.b");
- privileged: only where the node allows it (`NodePolicy.allow_privileged`, the agent's
  --allow-privileged); refused otherwise, with the flag named.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.pods.security import NodePolicy
from nodeagent.pods.specs import SpecError
from nodeagent.runtime import Privileges
from nodeagent.runtime.ocispec import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from pilothouse.v1 import objects_pb2


@dataclass(frozen=True, slots=True)
class RunAs:
    """Who the container's process is: None keeps the image's user or group."""

    uid: int | None
    gid: int | None


def run_as(pod: objects_pb2.Pod, container: objects_pb2.Container) -> RunAs:
    own, shared = container.security_context, pod.spec.security_context
    uid = own.run_as_user if own.HasField("run_as_user") else None
    if uid is None and shared.HasField("run_as_user"):
        uid = shared.run_as_user
    gid = own.run_as_group if own.HasField("run_as_group") else None
    if gid is None and shared.HasField("run_as_group"):
        gid = shared.run_as_group
    return RunAs(uid=uid, gid=gid)


def check_non_root(
    pod: objects_pb2.Pod, container: objects_pb2.Container, *, uid: int, image_user: str
) -> None:
    """SpecError when runAsNonRoot forbids what the container would run as."""
    own, shared = container.security_context, pod.spec.security_context
    if own.HasField("run_as_non_root"):
        required = own.run_as_non_root
    else:
        required = shared.HasField("run_as_non_root") and shared.run_as_non_root
    if not required:
        return
    meta = pod.metadata
    pod_name = f"{meta.name}_{meta.namespace or 'default'}({meta.uid})"
    who = f'(pod: "{pod_name}", container: {container.name})'
    explicit = run_as(pod, container).uid
    if explicit is not None:
        if explicit == 0:
            raise SpecError(f"container's runAsUser breaks non-root policy {who}")
        return
    name = image_user.partition(":")[0]
    if name and not name.isdigit():
        raise SpecError(
            f"container has runAsNonRoot and image has non-numeric user ({name}), cannot "
            f"verify user is non-root {who}"
        )
    if uid == 0:
        raise SpecError(f"container has runAsNonRoot and image will run as root {who}")


def privileges(
    pod: objects_pb2.Pod, container: objects_pb2.Container, *, policy: NodePolicy
) -> Privileges:
    context = container.security_context
    shared = pod.spec.security_context
    privileged = context.HasField("privileged") and context.privileged
    if privileged and not policy.allow_privileged:
        raise SpecError(
            f'container "{container.name}": privileged containers are not allowed on this node '
            "(an admin may allow them with the agent's --allow-privileged)"
        )
    caps = capabilities(context.capabilities)
    if context.HasField("allow_privilege_escalation"):
        no_new_privileges = not context.allow_privilege_escalation
    else:
        no_new_privileges = not (privileged or "CAP_SYS_ADMIN" in caps)
    groups = list(shared.supplemental_groups)
    if shared.HasField("fs_group") and shared.fs_group not in groups:
        groups.append(shared.fs_group)
    return Privileges(
        capabilities=None if caps == DEFAULT_CAPABILITIES else caps,
        no_new_privileges=no_new_privileges,
        read_only_root=context.read_only_root_filesystem,
        additional_gids=tuple(groups),
        sysctls=tuple((s.name.replace("/", "."), s.value) for s in shared.sysctls),
        privileged=privileged,
    )


def capabilities(spec: objects_pb2.Capabilities) -> tuple[str, ...]:
    """The capability set after `add` and `drop` (CAP_ names, the default set's order)."""
    add = [_cap(n) for n in spec.add]
    drop = [_cap(n) for n in spec.drop]
    caps = list(DEFAULT_CAPABILITIES)
    if "CAP_ALL" in drop:
        caps = []
    if "CAP_ALL" in add:
        caps = list(ALL_CAPABILITIES)
    for name in add:
        if name != "CAP_ALL" and name not in caps:
            caps.append(name)
    return tuple(c for c in caps if c not in drop)


def _cap(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"

"""The parts of a container's spec that come from its pod beyond the image: who it runs as,
its privileges, its volume mounts and the pod namespaces it joins.

`complete(spec, …)` takes what `specs.build` made from the container and its image and adds:
- user and group from runAsUser/runAsGroup (the image's passwd names the primary group),
  checked against runAsNonRoot (`privileges`);
- `Privileges` from the securityContexts and the node's policy;
- the bind mounts of its `volumeMounts` (`PodVolumes.mounts_for`), with `subPathExpr`
  expanded from its environment, among the runtime's own (the pod's /etc/hosts …), parents
  first;
- the pod's shared IPC (and PID) namespaces.

Every refusal is a `SpecError` (CreateContainerConfigError), with the kubelet's words.
"""

from __future__ import annotations

import dataclasses

from nodeagent.images import Image
from nodeagent.pods import privileges, specs
from nodeagent.pods.security import NodePolicy
from nodeagent.pods.volumes import PodVolumes, VolumeError
from nodeagent.runtime import ContainerSpec, Mount
from pilothouse.v1 import objects_pb2


def complete(
    spec: ContainerSpec,
    *,
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    image: Image,
    rootfs: list[Mount],
    volumes: PodVolumes | None,
    namespaces: dict[str, str],
    policy: NodePolicy,
) -> ContainerSpec:
    uid, gid = spec.uid, spec.gid
    wanted = privileges.run_as(pod, container)
    if wanted.uid is not None:
        uid, primary = specs.user_ids(str(wanted.uid), rootfs, image=image.reference)
        gid = primary
    if wanted.gid is not None:
        gid = wanted.gid
    privileges.check_non_root(pod, container, uid=uid, image_user=image.config.user)
    granted = privileges.privileges(pod, container, policy=policy)
    mounts = spec.mounts
    if container.volume_mounts:
        if volumes is None:
            raise specs.SpecError(f'container "{container.name}": the pod has no volumes ready')
        env = dict(item.split("=", 1) for item in spec.env if "=" in item)
        try:
            bound = volumes.mounts_for(container, env, expand=specs.expand)
        except VolumeError as exc:
            raise specs.SpecError(str(exc)) from None
        # Parents before children (as containerd sorts them); at one path, a volume after
        # the runtime's own file (the pod's /etc/hosts …), so the volume is what shows.
        mounts = tuple(
            sorted((*spec.mounts, *bound), key=lambda m: len(m.target.rstrip("/").split("/")))
        )
    return dataclasses.replace(
        spec,
        uid=uid,
        gid=gid,
        privileges=granted,
        mounts=mounts,
        namespaces={**spec.namespaces, **namespaces},
    )

"""Re-adoption: the containers a starting agent finds, sorted by the pod they belong to.

Role: `found(states)` groups the runtime's containers by pod (namespace/name and uid, from
their labels); `Found.verdicts(desired)` says which groups a desired pod adopts and which are
orphans; `remove_stray` ends a container that no label ties to any pod.

Vocabulary:
- group: the containers of one pod incarnation (pod key and uid);
- orphan: a group no desired pod adopts (its pod left the set while no agent ran, or its spec
  changed); its worker stops it;
- stray: a container without our pod labels (its records were lost beyond repair); nothing
  can adopt it.

Invariants: a desired pod adopts a group only with the same uid and spec hash; the caller
decides when (a starting agent whose desired set is unknown decides nothing until the control
plane pushes the set).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeagent.images import ImageService
from nodeagent.pods import specs
from nodeagent.pods.stop import stop_container
from nodeagent.runtime import ContainerNotFound, ContainerRuntime, ContainerState, RuntimeError_
from pilothouse.v1 import objects_pb2

STRAY_GRACE_SECONDS = 1.0  # the kubelet's grace for running pods it knows nothing of


@dataclass(frozen=True, slots=True)
class Group:
    key: str  # namespace/name
    uid: str
    containers: tuple[ContainerState, ...]


@dataclass(frozen=True, slots=True)
class Verdicts:
    adopted: list[tuple[objects_pb2.Pod, Group]] = field(default_factory=list)
    orphans: list[Group] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Found:
    groups: tuple[Group, ...]
    strays: tuple[ContainerState, ...]

    @property
    def containers(self) -> int:
        return sum(len(g.containers) for g in self.groups) + len(self.strays)

    def verdicts(self, desired: Mapping[str, objects_pb2.Pod]) -> Verdicts:
        """Which groups the desired pods (by key) adopt, and which are orphans."""
        out = Verdicts()
        for group in self.groups:
            want = desired.get(group.key)
            hashes = {s.labels.get(specs.LABEL_SPEC_HASH) for s in group.containers}
            if (
                want is not None
                and want.metadata.uid == group.uid
                and hashes == {specs.spec_hash(want)}
            ):
                out.adopted.append((want, group))
            else:
                out.orphans.append(group)
        return out


def found(states: Iterable[ContainerState]) -> Found:
    """The runtime's containers grouped by the pod their labels name."""
    groups: dict[tuple[str, str], list[ContainerState]] = {}
    strays: list[ContainerState] = []
    for state in states:
        uid = state.labels.get(specs.LABEL_UID)
        if not uid:
            strays.append(state)
            continue
        namespace = state.labels.get(specs.LABEL_NAMESPACE, "default")
        key = f"{namespace}/{state.labels.get(specs.LABEL_POD, '')}"
        groups.setdefault((key, uid), []).append(state)
    return Found(
        groups=tuple(Group(key, uid, tuple(states)) for (key, uid), states in groups.items()),
        strays=tuple(strays),
    )


async def remove_stray(
    runtime: ContainerRuntime, images: ImageService, state: ContainerState, *, log: Any
) -> None:
    """End and delete a container no pod can claim (SIGTERM, SIGKILL after a second)."""
    log.warning(
        "container.stray",
        id=state.id,
        note="its records name no pod (lost beyond repair): it is stopped and removed",
    )
    await stop_container(runtime, state.id, grace=STRAY_GRACE_SECONDS, log=log)
    with contextlib.suppress(ContainerNotFound, RuntimeError_):
        await runtime.delete(state.id)
    await images.release(state.id)

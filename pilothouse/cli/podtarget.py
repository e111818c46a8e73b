"""Which pod a command that enters one means: `NAME`, `pod/NAME`, or one pod of
`deployment/NAME`, `replicaset/NAME`, `statefulset/NAME`, `daemonset/NAME`, `job/NAME`,
`replicationcontroller/NAME`, `service/NAME` (`svc/NAME`), as
kubectl chooses it: a running pod first, then a ready one, then the oldest.

Invariant: the choice is said on stderr when there were several candidates, so a person knows
which replica they are in.
"""

from __future__ import annotations

from typing import TextIO

from google.protobuf.message import Message

from pilothouse import selectors
from pilothouse.cli import resources
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

OWNERS = (
    Kind.DEPLOYMENT,
    Kind.REPLICASET,
    Kind.STATEFULSET,
    Kind.REPLICATIONCONTROLLER,
    Kind.DAEMONSET,
    Kind.JOB,
)
# A Job selects its pods by the label Kubernetes generates from its uid (Pilothouse keeps its
# spec.selector empty: see controlplane.controllers.job).
JOB_UID = "batch.kubernetes.io/controller-uid"


def parse(word: str, *, verb: str) -> tuple[Kind, str]:
    if "/" not in word:
        return Kind.POD, word
    kind, name = resources.single([word], verb=verb)
    if kind is not Kind.POD and kind not in OWNERS and kind is not Kind.SERVICE:
        raise resources.UsageError(
            f"{verb} enters pods: give POD, pod/NAME, deployment/NAME, replicaset/NAME, "
            "statefulset/NAME, daemonset/NAME, job/NAME, replicationcontroller/NAME or svc/NAME"
        )
    return kind, name


async def resolve(
    client: Client, kind: Kind, name: str, *, namespace: str, err: TextIO
) -> tuple[objects_pb2.Pod, Message | None]:
    """The pod meant, and the object it was chosen through (None for a pod named)."""
    if kind is Kind.POD:
        pod = await client.get(Kind.POD, name, namespace=namespace)
        assert isinstance(pod, objects_pb2.Pod)
        return pod, None
    owner = await client.get(kind, name, namespace=namespace)
    if kind is Kind.SERVICE:
        labels = dict(owner.spec.selector)  # type: ignore[attr-defined]
        if not labels:
            raise resources.UsageError(
                f'service "{name}" has no selector: there is no pod behind it to enter'
            )
        wanted = selectors.from_match_labels(labels)
    else:
        selector = owner.spec.selector  # type: ignore[attr-defined]
        match = (
            selector.match_labels if isinstance(selector, objects_pb2.LabelSelector) else selector
        )
        if kind is Kind.JOB and not match:
            match = {JOB_UID: owner.metadata.uid}  # type: ignore[attr-defined]
        wanted = selectors.from_match_labels(match)
    listed = await client.list(Kind.POD, namespace=namespace, label_selector=str(wanted))
    pods = [p for p in listed.items if not p.metadata.HasField("deletion_timestamp")]
    if not pods:
        raise resources.UsageError(f"{kind.info.plural}/{name} has no pods")
    pods.sort(
        key=lambda p: (
            p.status.phase != "Running",
            not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions),
            p.metadata.creation_timestamp.ToDatetime(),
            p.metadata.name,
        )
    )
    if len(pods) > 1:
        print(f"Found {len(pods)} pods, using pod/{pods[0].metadata.name}", file=err)
    return pods[0], owner

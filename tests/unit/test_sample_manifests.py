"""Deployment manifests from the Kubernetes documentation and a public sample application
(tests/data/manifests/samples/, sources in SOURCES.md) apply unchanged: each file loads as
`pilothouse apply` reads it, passes the control plane's policy and is stored, with the
Services, claims and ServiceAccounts it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.objects import ObjectStore
from controlplane.services.addresses import ServiceAddresses
from controlplane.store.memory import MemoryStore
from pilothouse import manifests
from pilothouse.kinds import Kind
from pilothouse.manifests.validation.policy import ClusterPolicy
from pilothouse.v1 import objects_pb2

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "manifests" / "samples"
FILES = sorted(SAMPLES.glob("*/*.yaml"))


def test_there_are_at_least_twenty_deployment_manifests() -> None:
    deployments = [
        f for f in FILES if "kind: Deployment" in f.read_text() or '"Deployment"' in f.read_text()
    ]
    assert len(deployments) >= 20, f"only {len(deployments)} sample files with a Deployment"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
async def test_each_sample_applies_unchanged(path: Path) -> None:
    documents = manifests.load([str(path)])
    objects = ObjectStore(MemoryStore())
    services = ServiceAddresses(objects)
    for document in documents:
        problems = manifests.validate(document.message, policy=ClusterPolicy())
        assert not problems, f"{path.name}: the control plane would refuse: {problems}"
        if isinstance(document.message, objects_pb2.Service):
            await services.apply(document.message)
        else:
            await objects.apply(document.message)
    stored = (await objects.list(Kind.DEPLOYMENT)).items
    assert stored, f"{path.name}: no Deployment was stored"

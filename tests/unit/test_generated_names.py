"""Generated names are cut to length as Kubernetes cuts them (issue 12): a 60-character
Deployment name gave 77-character pod names used as hostnames (`sethostname: invalid
argument`), a 250-character one pod names over 253 characters (ENAMETOOLONG)."""

from __future__ import annotations

import re

import pytest

from controlplane.controllers.deployment import revisions
from controlplane.store.memory import MemoryStore
from nodeagent.pods import specs
from pilothouse.kinds import Kind
from pilothouse.manifests import names
from tests import factories
from tests.unit.test_deployment_controller import Plane, wait_for_pods

SAFE = f"[{names.SAFE_ALPHABET}]"


def test_generate_cuts_the_base_to_58_and_adds_5_safe_characters() -> None:
    assert re.fullmatch(f"web-{SAFE}{{5}}", names.generate("web-"))
    long = "a" * 100
    made = names.generate(long)
    assert len(made) == 63 and made.startswith("a" * 58)
    assert re.fullmatch(f"a{{58}}{SAFE}{{5}}", made)
    assert len({names.generate("x-") for _ in range(50)}) > 45, "suffixes are not random"


def test_hostname_is_at_most_63_characters_without_a_trailing_dash_or_dot() -> None:
    assert names.hostname("web-abc") == "web-abc"
    assert names.hostname("a" * 62 + "-bcdfg") == "a" * 62
    assert names.hostname("a" * 61 + "-.bcdef") == "a" * 61
    pod = factories.pod(name="p" * 77)
    assert specs.hostname(pod) == "p" * 63
    pod.spec.hostname = "chosen"
    assert specs.hostname(pod) == "chosen"


def test_replicaset_name_of_a_long_deployment_fits_a_subdomain() -> None:
    assert revisions.replicaset_name("web", "bcdfghjklm") == "web-bcdfghjklm"
    cut = revisions.replicaset_name("d" * 250, "bcdfghjklm")
    assert len(cut) == 253 and cut.endswith("-bcdfghjklm")
    dotted = revisions.replicaset_name("d" * 241 + ".e" + "f" * 7, "bcdfghjklm")
    assert names.dns1123_subdomain(dotted) == [], dotted


@pytest.mark.parametrize("length", [60, 250])
async def test_a_deployment_with_a_long_name_gets_pods_with_short_valid_names(length: int) -> None:
    name = ("long-" * 60)[: length - 1] + "x"
    deployment = factories.deployment(name=name, labels={"app": "long"}, replicas=2)
    async with Plane(MemoryStore()) as plane:
        await plane.objects.create(deployment)
        pods = await wait_for_pods(plane.objects, 2)
        (rs,) = (await plane.objects.list(Kind.REPLICASET, "default")).items
    assert names.dns1123_subdomain(rs.metadata.name) == [], rs.metadata.name
    for pod in pods:
        assert len(pod.metadata.name) <= 63, f"pod name of {len(pod.metadata.name)} characters"
        assert names.dns1123_subdomain(pod.metadata.name) == [], pod.metadata.name
        assert pod.metadata.name.startswith(rs.metadata.name[:58])
        assert len(specs.hostname(pod)) <= 63

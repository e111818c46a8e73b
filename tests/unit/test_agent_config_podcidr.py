"""The pod network's pod CIDR when it comes from the control plane: bound at registration,
remembered for the next start, and sandboxes before it fail with a clear reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nodeagent.network.sandbox import (
    Mode,
    PodCidrUnknown,
    PodNetworks,
    remember_pod_cidr,
    remembered_pod_cidr,
)
from tests import factories


def test_a_fresh_agent_binds_the_registered_range_and_remembers_it(tmp_path: Path) -> None:
    networks = PodNetworks(mode=Mode.CNI, state_dir=tmp_path, pod_cidr_from_registration=True)
    assert networks.pod_cidr == "", "a fresh agent should ask the control plane for a range"
    assert networks.bind("10.244.0.0/24")
    assert networks.pod_cidr == "10.244.0.0/24"
    assert remembered_pod_cidr(tmp_path) == "10.244.0.0/24", "the range was not kept on disk"
    assert networks.bind("10.244.0.0/24"), "binding the same range again should be harmless"
    assert not networks.bind("10.244.9.0/24"), "a second, different range should be refused"
    assert networks.pod_cidr == "10.244.0.0/24", "pods would get addresses from two ranges"

    restarted = PodNetworks(mode=Mode.CNI, state_dir=tmp_path, pod_cidr_from_registration=True)
    assert restarted.pod_cidr == "10.244.0.0/24", (
        "a restarted agent should use (and ask for) the range its pods have addresses from"
    )


def test_an_explicit_pod_cidr_wins_over_the_remembered_one(tmp_path: Path) -> None:
    remember_pod_cidr(tmp_path, "10.244.0.0/24")
    networks = PodNetworks(
        mode=Mode.CNI,
        state_dir=tmp_path,
        pod_cidr="10.250.0.0/24",
        pod_cidr_from_registration=True,
    )
    assert networks.pod_cidr == "10.250.0.0/24"
    assert remembered_pod_cidr(tmp_path) == "10.244.0.0/24", (
        "a range the control plane has not confirmed yet (it may refuse it) was remembered"
    )
    assert networks.bind("10.250.0.0/24")
    assert remembered_pod_cidr(tmp_path) == "10.250.0.0/24"


def test_other_modes_have_no_pod_cidr_and_write_nothing(tmp_path: Path) -> None:
    for mode in (Mode.NONE, Mode.HOST):
        networks = PodNetworks(mode=mode, state_dir=tmp_path, pod_cidr_from_registration=True)
        assert networks.bind("10.244.0.0/24")
        assert networks.pod_cidr == ""
    assert list(tmp_path.iterdir()) == [], "modes without pod addresses wrote files"


async def test_a_sandbox_before_registration_waits_then_fails_clearly(tmp_path: Path) -> None:
    networks = PodNetworks(
        mode=Mode.CNI,
        state_dir=tmp_path,
        pod_cidr_from_registration=True,
        pod_cidr_wait=0.05,
    )
    with pytest.raises(PodCidrUnknown, match=r"no pod CIDR yet.*registers with the control plane"):
        await networks.attach(
            factories.pod(uid="uid-1", containers=[factories.container(name="web")])
        )
    assert not (tmp_path / "netns").exists(), "a failed sandbox left a namespace behind"
    assert await networks.detach_others([]) == [], "nothing was attached, nothing to remove"


async def test_a_sandbox_waiting_for_the_range_goes_on_once_it_is_bound(tmp_path: Path) -> None:
    networks = PodNetworks(
        mode=Mode.CNI,
        state_dir=tmp_path,
        pod_cidr_from_registration=True,
        pod_cidr_wait=30,
        plugin_dir=tmp_path / "no-plugins",
    )
    attaching = asyncio.create_task(
        networks.attach(factories.pod(uid="uid-1", containers=[factories.container(name="web")]))
    )
    await asyncio.sleep(0.05)
    assert not attaching.done(), "the sandbox did not wait for the pod CIDR"
    networks.bind("10.244.0.0/24")
    # It proceeds to the plugins, which are missing here: their error, not the CIDR's.
    with pytest.raises(Exception, match="plugin not found") as caught:
        await asyncio.wait_for(attaching, 10)
    assert not isinstance(caught.value, PodCidrUnknown)

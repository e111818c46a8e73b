"""What a node runs a container with beyond its spec (issue 11): the default seccomp profile
unless the pod asks Unconfined and the node's admin allows it; no hostUsers: false."""

from __future__ import annotations

import pytest

from nodeagent.pods.security import NodePolicy, check_host_users, seccomp_of
from nodeagent.pods.specs import SpecError
from nodeagent.runtime import Seccomp
from tests import factories


def _pod(pod_type: str = "", container_type: str = ""):  # type: ignore[no-untyped-def]
    pod = factories.pod(containers=[factories.container(name="app")])
    if pod_type:
        pod.spec.security_context.seccomp_profile.type = pod_type
    if container_type:
        pod.spec.containers[0].security_context.seccomp_profile.type = container_type
    return pod


def test_every_container_gets_the_default_profile_unless_it_asks_otherwise() -> None:
    pod = _pod()
    assert seccomp_of(pod, pod.spec.containers[0], policy=NodePolicy()) is Seccomp.RUNTIME_DEFAULT


def test_unconfined_needs_the_nodes_flag_and_says_which() -> None:
    pod = _pod(pod_type="Unconfined")
    with pytest.raises(SpecError, match="--allow-unconfined-seccomp"):
        seccomp_of(pod, pod.spec.containers[0], policy=NodePolicy())
    allowed = NodePolicy(allow_unconfined_seccomp=True)
    assert seccomp_of(pod, pod.spec.containers[0], policy=allowed) is Seccomp.UNCONFINED


def test_a_containers_own_profile_wins_over_the_pods() -> None:
    pod = _pod(pod_type="Unconfined", container_type="RuntimeDefault")
    assert seccomp_of(pod, pod.spec.containers[0], policy=NodePolicy()) is Seccomp.RUNTIME_DEFAULT


def test_host_users_false_is_refused_not_run_with_the_nodes_users() -> None:
    pod = _pod()
    check_host_users(pod)
    pod.spec.host_users = False
    with pytest.raises(SpecError, match="hostUsers: false"):
        check_host_users(pod)

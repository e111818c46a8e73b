"""Node takeover, as an attacker with a join token tries it against real processes (issue 11,
item 3): a second agent joining with a live node's name is refused with one line saying how an
admin would allow it; `pilothouse node revoke` cuts the live node's certificate off at its next
call; after `pilothouse node approve` the replacement joins and runs as the node."""

from __future__ import annotations

from pathlib import Path

from pilothouse.kinds import Kind
from tests.e2e.joining import JoiningAgent, cli, join_words, until
from tests.fixtures.controlplane import ControlPlaneProcess


async def ready(plane: ControlPlaneProcess, name: str) -> bool:
    async with plane.client() as client:
        try:
            node = await client.get(Kind.NODE, name)
        except Exception:
            return False
    return any(
        c.type == "Ready" and c.status == "True"
        for c in node.status.conditions  # type: ignore[attr-defined]
    )


async def test_a_token_cannot_take_over_a_live_node_and_revoke_cuts_it_off(
    control_plane: ControlPlaneProcess, agents: list[JoiningAgent], tmp_path: Path
) -> None:
    plane = control_plane
    home = tmp_path / "home"
    words = join_words(plane, home, "--ttl", "10m")
    owner = JoiningAgent("node-a", words)
    agents.append(owner)
    owner.start()
    owner.wait_serving()
    await until(lambda: ready(plane, "node-a"), "node-a was not Ready")

    # Another machine, a valid token, the same name: refused, with how to allow it.
    intruder = JoiningAgent("node-a", words)
    agents.append(intruder)
    intruder.start()
    assert intruder.wait_exit() != 0, f"the second node-a kept running:\n{intruder.log()}"
    [error] = intruder.errors()
    assert error.startswith("error: the control plane refused node 'node-a': node \"node-a\" "), (
        error
    )
    assert "pilothouse node approve node-a" in error, error
    assert not (intruder.state / "pki" / "node.crt").exists(), "the intruder got a certificate"
    assert owner.process is not None and owner.process.poll() is None

    # The admin revokes node-a: its agent's next call is refused; the node goes NotReady.
    revoked = cli(plane, home, "node", "revoke", "node-a")
    assert revoked.returncode == 0, revoked.stderr
    assert "node/node-a revoked" in revoked.stdout

    async def refused_in_log() -> bool:
        return "revoked" in owner.log() and "UNAUTHENTICATED" in owner.log()

    await until(refused_in_log, "node-a's agent was not refused after `node revoke`")

    async def not_ready() -> bool:
        return not await ready(plane, "node-a")

    await until(not_ready, "a revoked node stayed Ready")

    # Approved, the replacement joins (with the same token) and becomes the Ready node-a.
    approved = cli(plane, home, "node", "approve", "node-a")
    assert approved.returncode == 0, approved.stderr
    owner.stop()
    replacement = JoiningAgent("node-a", words)
    agents.append(replacement)
    replacement.start()
    replacement.wait_serving()
    await until(lambda: ready(plane, "node-a"), "the approved replacement was not Ready")
    assert replacement.credentials().node_name == "node-a"

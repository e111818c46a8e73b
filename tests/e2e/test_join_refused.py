"""Secure join refused, as a user or an attacker would see it: joins with a wrong, expired or
unknown token, a wrong CA hash or an unreachable join port end the agent with one clear line;
a client without (the right) credentials is refused on every RPC (tests.e2e.joining)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pilothouse import credentials, pki
from tests.e2e.joining import (
    WAIT,
    JoiningAgent,
    call,
    every_method,
    flag,
    join_words,
    refusal,
)
from tests.fixtures.controlplane import ControlPlaneProcess


def test_refused_joins_end_the_agent_with_one_clear_line(
    shared_control_plane: ControlPlaneProcess, agents: list[JoiningAgent], tmp_path: Path
) -> None:
    plane = shared_control_plane
    home = tmp_path / "home"
    words = join_words(plane, home)
    join_server = flag(words, "--join-server")
    base = ["--server", plane.address, "--join-server", join_server]
    right_hash = plane.ca_cert_hash
    wrong_hash = pki.ca_cert_hash(pki.create_ca().cert_pem)
    expiring = join_words(plane, home, "--ttl", "1s")
    time.sleep(2.0)  # past its expiry
    with socket_closed() as closed:
        cases = {
            "wrong token": (
                [*base, "--token", "abcdef.0123456789abcdef", "--ca-cert-hash", right_hash],
                "error: the control plane refused node 'wrong-token': the join token "
                '"abcdef" is unknown to this control plane; create one with '
                "`pilothouse token create`",
            ),
            "expired token": (
                [*base, "--token", flag(expiring, "--token"), "--ca-cert-hash", right_hash],
                "error: the control plane refused node 'expired-token': the join token "
                f'"{flag(expiring, "--token").split(".")[0]}" expired',
            ),
            "wrong CA hash": (
                [*base, "--token", flag(words, "--token"), "--ca-cert-hash", wrong_hash],
                f"error: the control plane's CA hash {right_hash} does not match "
                f"--ca-cert-hash {wrong_hash}; refusing to join",
            ),
            "unreachable server": (
                [
                    "--server",
                    closed,
                    "--token",
                    flag(words, "--token"),
                    "--ca-cert-hash",
                    right_hash,
                ],
                f"error: cannot reach the control plane's join port at {_next_port(closed)}",
            ),
            "no token, no credentials": (
                ["--server", plane.address],
                "error: node 'no-token-no-credentials' has no valid certificate",
            ),
        }
        started = []
        for case, (flags, _) in cases.items():
            agent = JoiningAgent(case.replace(" ", "-").replace(",", "").lower(), flags)
            agents.append(agent)
            agent.start()
            started.append((case, agent))
        for case, agent in started:
            code = agent.wait_exit()
            expected = cases[case][1]
            assert code != 0, f"{case}: the agent exited 0:\n{agent.log()}"
            errors = agent.errors()
            assert len(errors) == 1 and errors[0].startswith(expected), (
                f"{case}: the agent said {errors!r}, not a line starting {expected!r}"
            )
            assert not (agent.state / "pki" / "node.crt").exists(), (
                f"{case}: a refused agent kept a certificate"
            )
            assert not (agent.state / "agent.addr").exists(), f"{case}: a refused agent served"


@contextlib.contextmanager
def socket_closed() -> Iterator[str]:
    """ "127.0.0.1:P" where neither P nor P + 1 (the default join port) accepts connections."""
    import socket

    for _ in range(50):
        with socket.socket() as one, socket.socket() as two:
            one.bind(("127.0.0.1", 0))
            port = one.getsockname()[1]
            try:
                two.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        yield f"127.0.0.1:{port}"
        return
    pytest.skip("no two free neighbouring ports")


def _next_port(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + 1}"


async def test_a_client_without_credentials_is_refused_on_every_rpc(
    shared_control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    plane = shared_control_plane
    assert plane.join_address
    ca_only = credentials.TlsMaterial(ca_pem=(plane.data_dir / "pki" / "ca.crt").read_bytes())
    stranger_ca = pki.create_ca()
    stranger = credentials.TlsMaterial(
        ca_pem=ca_only.ca_pem,
        cert_pem=(issued := pki.issue_client(stranger_ca, pki.ADMIN)).cert_pem,
        key_pem=issued.key_pem,
    )
    methods = every_method()
    assert len(methods) >= 12
    # The join port takes the call, and the authorizer refuses it: UNAUTHENTICATED.
    async with credentials.secure_channel(plane.join_address, ca_only) as channel:
        for method, streaming, request in methods:
            code = await refusal(call(channel, method, streaming, request()))
            assert code is grpc.StatusCode.UNAUTHENTICATED, (
                f"{method} without a client certificate on the join port answered {code.name}"
            )
    # The API port does not even complete the handshake: no certificate, a stranger's
    # certificate (an admin of another CA), or plaintext.
    for who, channel in (
        ("no certificate", credentials.secure_channel(plane.address, ca_only)),
        ("another CA's admin", credentials.secure_channel(plane.address, stranger)),
        ("plaintext", grpc.aio.insecure_channel(plane.address)),
    ):
        async with channel:
            for method, streaming, request in methods:
                code = await refusal(call(channel, method, streaming, request()))
                assert code is grpc.StatusCode.UNAVAILABLE, (
                    f"{method} with {who} on the API port answered {code.name}"
                )
    # And the CLI without the admin config says what to do.
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("PILOTHOUSE_CONFIG", None)
    got = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pilothouse.cli.main", "--server", plane.address, "get", "pods"],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )
    assert got.returncode == 1
    assert "pass its admin config with --config" in got.stderr, got.stderr
    denied = [line for line in plane.log_tail(400).splitlines() if "auth.denied" in line]
    assert denied, "refused calls were not logged as auth.denied"

"""Secure join, as an operator does it: a real control plane (mutual TLS, the default) and real
agents in network namespaces of their own, joined with the line `pilothouse token create
--print-join-command` prints; refused joins, anonymous clients and node certificates that
reach beyond their node, each seen as a user or an attacker would see them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nodeagent import join
from pilothouse import credentials, kinds, pki
from pilothouse.cli.cluster.netns import NodeHost
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2, agent_pb2_grpc, controlplane_pb2, objects_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc
from tests.fixtures.controlplane import ControlPlaneProcess

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0


class JoiningAgent:
    """`pilothouse agent …` (fake runtime) started on a node host, or on this machine."""

    def __init__(self, name: str, words: list[str], *, host: NodeHost | None = None) -> None:
        self.name = name
        self.host = host
        self.state = Path(tempfile.mkdtemp(prefix="ph-join-"))
        self.words = words  # --server … [--token … --ca-cert-hash …]
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, words: list[str] | None = None) -> None:
        listen = f"{self.host.address}:0" if self.host else "127.0.0.1:0"
        node_ip = self.host.address if self.host else "127.0.0.1"
        argv = [
            sys.executable, "-m", "pilothouse.cli.main", "agent", "--name", self.name,
            "--listen", listen, "--node-ip", node_ip, "--state-dir", str(self.state),
            "--runtime", "fake", *(self.words if words is None else words),
        ]  # fmt: skip
        (self.state / "agent.addr").unlink(missing_ok=True)
        with (self.state / "agent.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.host.command(argv) if self.host else argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def wait_serving(self) -> None:
        assert self.process is not None
        addr = self.state / "agent.addr"
        deadline = time.monotonic() + WAIT
        while not (addr.exists() and addr.read_text().endswith("\n")):
            assert self.process.poll() is None, f"agent {self.name} exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"agent {self.name} never served:\n{self.log()}"
            time.sleep(0.05)
        self.address = addr.read_text().strip()

    def wait_exit(self) -> int:
        assert self.process is not None
        try:
            return self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"agent {self.name} kept running after a refused join:\n{self.log()}")

    def errors(self) -> list[str]:
        """The `error: …` lines the agent printed (its one-line verdict)."""
        return [line for line in self.log().splitlines() if line.startswith("error: ")]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def credentials(self) -> join.NodeCredentials:
        found = join.NodeCredentials.load(self.state / "pki")
        assert found is not None, f"agent {self.name} kept no credentials:\n{self.log()}"
        return found

    def log(self) -> str:
        path = self.state / "agent.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


@pytest.fixture
def agents() -> Iterator[list[JoiningAgent]]:
    """Every agent a test starts; all killed (process group) and their state removed."""
    made: list[JoiningAgent] = []
    try:
        yield made
    finally:
        for agent in made:
            agent.stop()
            subprocess.run(["rm", "-rf", str(agent.state)], check=False)


def cli(plane: ControlPlaneProcess, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`pilothouse ARGV…` with the admin config the control plane wrote (PILOTHOUSE_CONFIG)."""
    env = plane.cli_env({**os.environ, "HOME": str(home)})
    env.pop("PILOTHOUSE_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "pilothouse.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=WAIT,
        check=False,
    )


def join_words(plane: ControlPlaneProcess, home: Path, *create_flags: str) -> list[str]:
    """The agent flags of `pilothouse token create --print-join-command`'s line."""
    printed = cli(plane, home, "token", "create", "--print-join-command", *create_flags)
    assert printed.returncode == 0, f"token create failed: {printed.stderr}"
    words = shlex.split(printed.stdout.strip())
    assert words[:2] == ["pilothouse", "agent"], f"not an agent command: {printed.stdout!r}"
    return words[2:]


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


async def until(check, what: str) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {WAIT:.0f} s")
        await asyncio.sleep(0.2)


def every_method() -> list[tuple[str, bool, type]]:
    """(full method name, server streaming, request class) of every guarded service."""
    methods = []
    for service in ("ControlPlane", "NodeRegistry", "Tokens"):
        for method in controlplane_pb2.DESCRIPTOR.services_by_name[service].methods:
            request = getattr(controlplane_pb2, method.input_type.name)
            methods.append(
                (f"/pilothouse.v1.{service}/{method.name}", method.server_streaming, request)
            )
    return methods


async def call(channel: grpc.aio.Channel, method: str, streaming: bool, request: object) -> None:
    serialize = type(request).SerializeToString  # type: ignore[attr-defined]
    if streaming:
        stream = channel.unary_stream(method, request_serializer=serialize)(request, timeout=10)
        async for _ in stream:
            break
    else:
        await channel.unary_unary(method, request_serializer=serialize)(request, timeout=10)


async def refusal(coroutine) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        await coroutine
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_three_agents_join_with_a_token_and_run_pods_over_mutual_tls(
    cluster_hosts: list[NodeHost], agents: list[JoiningAgent], tmp_path: Path
) -> None:
    gateway = cluster_hosts[0].gateway
    plane = ControlPlaneProcess(
        tmp_path / "cp", listen=f"{gateway}:0", flags=("--tls-san", f"{gateway},cp.example")
    )
    plane.start()
    try:
        words = join_words(plane, tmp_path / "home", "--ttl", "10m")
        assert flag(words, "--server") == plane.address
        assert flag(words, "--ca-cert-hash") == plane.ca_cert_hash
        for host in cluster_hosts:
            agents.append(JoiningAgent(host.name, words, host=host))
            agents[-1].start()
        for agent in agents:
            agent.wait_serving()
        names = sorted(host.name for host in cluster_hosts)

        async with plane.client() as client:

            async def all_ready() -> bool:
                nodes = (await client.list(Kind.NODE)).items
                ready = {
                    n.metadata.name
                    for n in nodes
                    for c in n.status.conditions
                    if c.type == "Ready" and c.status == "True"
                }
                return sorted(ready) == names

            await until(all_ready, f"nodes {names} were not all Ready")
            applied = cli(
                plane, tmp_path / "home", "apply", "-f", str(REPO / "deploy/examples/web.yaml")
            )
            assert applied.returncode == 0, applied.stderr
            shown = cli(plane, tmp_path / "home", "get", "deploy", "-o", "json")
            assert shown.returncode == 0, shown.stderr

            async def running_everywhere() -> set[str] | None:
                pods = (await client.list(Kind.POD, namespace="default")).items
                running = [p for p in pods if p.status.phase == "Running"]
                nodes = {p.spec.node_name for p in running}
                return nodes if running and len(running) == len(pods) else None

            spread = await until(running_everywhere, "the Deployment's pods never all ran")
            assert spread == set(names), f"the 3 replicas ran on {sorted(spread)}, not spread"

        # What a node's certificate can and cannot do.
        first, second = agents[0], agents[1]
        node = first.credentials()
        assert node.node_name == first.name
        async with credentials.secure_channel(plane.address, node.material) as channel:
            stub = api_grpc.ControlPlaneStub(channel)
            deployment = objects_pb2.Deployment(api_version="apps/v1", kind="Deployment")
            deployment.metadata.name = "intruder"
            apply = stub.Apply(
                controlplane_pb2.ApplyRequest(object=kinds.wrap(deployment)),
                timeout=10,
            )
            assert await refusal(apply) is grpc.StatusCode.PERMISSION_DENIED, (
                "a node certificate could apply a Deployment"
            )
            for method, streaming, request in every_method():
                if "/NodeRegistry/" in method:
                    continue
                assert (
                    await refusal(call(channel, method, streaming, request()))
                    is grpc.StatusCode.PERMISSION_DENIED
                ), f"a node certificate could call {method}"
            registry = api_grpc.NodeRegistryStub(channel)
            other = registry.Heartbeat(
                controlplane_pb2.HeartbeatRequest(node_name=second.name), timeout=10
            )
            assert await refusal(other) is grpc.StatusCode.PERMISSION_DENIED, (
                f"node {first.name} could heartbeat for node {second.name}"
            )
            register_other = registry.RegisterNode(
                controlplane_pb2.RegisterNodeRequest(
                    node=objects_pb2.Node(metadata=objects_pb2.ObjectMeta(name=second.name))
                ),
                timeout=10,
            )
            assert await refusal(register_other) is grpc.StatusCode.PERMISSION_DENIED, (
                f"node {first.name} could register node {second.name}"
            )

        # An agent's own server admits only the control plane.
        async def list_pods(channel: grpc.aio.Channel) -> grpc.StatusCode:
            async with channel:
                stub = agent_pb2_grpc.NodeAgentStub(channel)
                return await refusal(stub.ListPods(agent_pb2.ListPodsRequest(), timeout=10))

        target = second.address
        assert await list_pods(plane.agent_channel(target, second.name)) is grpc.StatusCode.OK
        admin = plane.admin_tls()
        assert admin is not None
        as_admin = credentials.secure_channel(target, admin, server_name=second.name)
        assert await list_pods(as_admin) is grpc.StatusCode.PERMISSION_DENIED
        as_node = credentials.secure_channel(target, node.material, server_name=second.name)
        assert await list_pods(as_node) is grpc.StatusCode.PERMISSION_DENIED
        anonymous = credentials.TlsMaterial(ca_pem=node.ca_pem)
        no_cert = credentials.secure_channel(target, anonymous, server_name=second.name)
        assert await list_pods(no_cert) is not grpc.StatusCode.OK
        assert await list_pods(grpc.aio.insecure_channel(target)) is not grpc.StatusCode.OK

        # A restarted agent with its saved credentials needs no token (the token is revoked).
        token = flag(words, "--token")
        deleted = cli(plane, tmp_path / "home", "token", "delete", token)
        assert deleted.returncode == 0, deleted.stderr
        first.stop()
        first.start(["--server", plane.address])
        first.wait_serving()
        assert first.credentials().cert_pem == node.cert_pem, "the restarted agent joined again"
        async with plane.client() as client:

            async def ready_again() -> bool:
                got = await client.get(Kind.NODE, first.name)
                return any(
                    c.type == "Ready" and c.status == "True" and c.reason == "AgentReady"
                    for c in got.status.conditions  # type: ignore[attr-defined]
                )

            await until(ready_again, f"{first.name} was not Ready after its restart")
        assert first.process is not None and first.process.poll() is None, first.log()
    finally:
        plane.stop()


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

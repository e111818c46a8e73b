"""etcd behind mutual TLS, seen as an attacker on the same machine would try it: a local user
(`nobody`, uid 65534) connecting to the ports of the control plane's embedded etcd gets nothing,
whether it speaks plain HTTP, TLS without a client certificate, or asks the HTTP gateway; the
control plane itself reads and writes through its own client certificate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.store.embedded import client_ssl_context
from controlplane.store.tls import EtcdPki
from pilothouse.kinds import Kind
from tests.fixtures.controlplane import ControlPlaneProcess

NOBODY = 65534

# Run as nobody by the system python (stdlib only): every way to talk to etcd's ports without
# the control plane's key, each answered with what came back (or the error).
PROBE = r"""
import json, socket, ssl, sys

port = int(sys.argv[1])
BODY = b'{"key":"AA==","range_end":"AA=="}'
REQUESTS = {
    "GET /version": b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "GET /health": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "GET /metrics": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "GET /members": b"GET /members HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "POST /v3/kv/range": b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nConnection: close\r\nContent-Length: "
    + str(len(BODY)).encode() + b"\r\n\r\n" + BODY,
    "h2c preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}

def read_all(sock):
    data = b""
    while len(data) < 1 << 20:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")

def plain(request):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request)
            return read_all(sock)
    except OSError as error:
        return f"error: {error}"

def tls(request):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(request)
                return read_all(sock)
    except (OSError, ssl.SSLError) as error:
        return f"error: {error}"

print(json.dumps({
    f"{how} {what}": probe(request)
    for how, probe in (("plain", plain), ("tls-no-cert", tls))
    for what, request in REQUESTS.items()
}))
"""

# What any etcd answer carrying data or state would contain.
LEAKS = ('"etcdserver"', '"kvs"', '"health"', '"header"', "etcd_", '"members"', "peerURLs")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop to nobody"
    return subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )


def etcd_ports(plane: ControlPlaneProcess) -> tuple[int, int]:
    saved = json.loads((plane.data_dir / "etcd" / "etcd.json").read_text())
    return int(saved["client_port"]), int(saved["peer_port"])


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a probe as nobody")
async def test_nobody_gets_nothing_from_the_embedded_etcds_ports(
    control_plane: ControlPlaneProcess,
) -> None:
    # The control plane works through etcd (so it is up, and the store is in use).
    async with control_plane.client() as client:
        assert (await client.list(Kind.NODE)).items == []
    client_port, peer_port = etcd_ports(control_plane)

    for port in (client_port, peer_port):
        probe = as_nobody("/usr/bin/python3", "-c", PROBE, str(port))
        assert probe.returncode == 0, f"the probe as nobody failed: {probe.stderr}"
        answers = json.loads(probe.stdout)
        leaked = {
            attempt: answer[:300]
            for attempt, answer in answers.items()
            if any(mark in answer for mark in LEAKS)
        }
        assert not leaked, (
            f"a local user (nobody) read etcd's state on port {port} without credentials: {leaked}"
        )

    # The same request with the control plane's etcd client certificate is answered: the probe
    # above would have seen data had the port given it. The gateway is off even then.
    pki = EtcdPki(control_plane.data_dir / "pki" / "etcd")
    import http.client

    connection = http.client.HTTPSConnection(
        "127.0.0.1", client_port, timeout=5, context=client_ssl_context(pki)
    )
    try:
        connection.request("GET", "/version")
        assert b'"etcdserver"' in connection.getresponse().read()
        connection.request("POST", "/v3/kv/range", body=b'{"key":"AA==","range_end":"AA=="}')
        gateway = connection.getresponse()
        body = gateway.read()
        assert b'"kvs"' not in body, "etcd's HTTP/JSON gateway answers (it must be off)"
    finally:
        connection.close()

    # And nobody cannot read the keys that would let it in.
    for key in ("client.key", "server.key", "peer.key", "ca.key"):
        path = pki.directory / key
        read = as_nobody("/usr/bin/python3", "-c", f"open({str(path)!r}, 'rb').read()")
        assert read.returncode != 0, f"nobody could read {path}"


def test_etcd_tls_flags_are_checked(tmp_path: Path) -> None:
    """`--etcd https://…` needs the CA; files that do not exist and mixed schemes are refused
    before anything starts, each with a line that says what to pass."""
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    cases = {
        ("--etcd", "https://127.0.0.1:2379"): "need --etcd-cafile",
        ("--etcd", "https://a:2379,http://b:2379"): "mixes https:// and http://",
        ("--etcd", "http://a:2379", "--etcd-cafile", str(ca)): "needs https:// --etcd URLs",
        ("--etcd-cafile", str(ca)): "needs --etcd",
        (
            "--etcd",
            "https://a:2379",
            "--etcd-cafile",
            str(tmp_path / "missing.crt"),
        ): "no such file",
        ("--etcd", "https://a:2379", "--etcd-cafile", str(ca), "--etcd-certfile", str(ca)): (
            "go together"
        ),
    }
    for flags, expected in cases.items():
        got = subprocess.run(
            [sys.executable, "-m", "controlplane", "--data-dir", str(tmp_path / "d"), *flags],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.returncode == 2 and expected in got.stderr, (
            f"controlplane {' '.join(flags)}: exit {got.returncode}, said {got.stderr!r}, "
            f"not {expected!r}"
        )
    helped = subprocess.run(
        [sys.executable, "-m", "controlplane", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "plaintext on loopback" in " ".join(helped.stdout.split()), (
        "--help does not say that --insecure runs etcd in plaintext"
    )

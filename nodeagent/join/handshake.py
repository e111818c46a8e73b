"""Joining a node to the cluster and renewing its certificate: the exchange with the control
plane (the agent's side).

The join, as kubeadm does it (no trust on first use):
1. open TLS to the join port WITHOUT verifying, and read the chain the server presents (the
   control plane appends its CA to it);
2. trust the CA only if its hash equals `--ca-cert-hash`, and only if it signed the server's
   certificate; otherwise refuse with both hashes in the message;
3. reconnect verifying that CA, send a CSR for `system:node:<name>` with the bootstrap token,
   and get back the certificate (`NodeCredentials`: certificate, key and CA).
Renewal: a new key and CSR go over mutual TLS with the current certificate, no token needed.

Invariants: nothing received before step 2 succeeds is trusted; a certificate is kept only if
the trusted CA signed it for our own key; during renewal the CA may not change; every failure
is a `JoinError` whose message says what to do.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509

from nodeagent.state.quarantine import quarantine
from pilothouse import credentials, pki
from pilothouse.client import failover
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 15.0


class JoinError(Exception):
    """The node could not join or renew; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return pki.load_cert(self.cert_pem)

    @property
    def node_name(self) -> str | None:
        return pki.Identity.of(self.cert).node_name

    @property
    def material(self) -> credentials.TlsMaterial:
        return credentials.TlsMaterial(
            ca_pem=self.ca_pem, cert_pem=self.cert_pem, key_pem=self.key_pem
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        pki.write_cert(directory / "ca.crt", self.ca_pem)
        pki.write_key(directory / "node.key", self.key_pem)
        pki.write_cert(directory / "node.crt", self.cert_pem)

    @classmethod
    def load(cls, directory: Path) -> NodeCredentials | None:
        paths = [directory / n for n in ("ca.crt", "node.crt", "node.key")]
        if not all(p.exists() for p in paths):
            return None
        try:
            found = cls(*(p.read_bytes() for p in paths))
            matched = found.cert.public_key() == pki.load_key(found.key_pem).public_key()
        except (OSError, ValueError, TypeError) as exc:  # damaged: kept aside, join again
            for path in paths:
                quarantine(path, error=exc, instead="the node joins again (it needs --token)")
            return None
        if not matched:
            return None  # a crash between writes: join or renew again
        return found


def presented_chain(address: str, *, call_timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
    """The PEM certificates a TLS server presents, read WITHOUT verifying them."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=call_timeout) as raw,
            context.wrap_socket(raw, server_hostname=pki.SERVER_NAME) as tls,
        ):
            # Public from Python 3.13; the same method on the SSL object before.
            reader = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain  # type: ignore[union-attr]
            chain = reader() or []
    except (OSError, ValueError) as error:
        raise JoinError(
            f"cannot reach the control plane's join port at {address}: {error}"
        ) from None
    pems = []
    for cert in chain:
        if isinstance(cert, bytes):
            pems.append(ssl.DER_cert_to_PEM_cert(cert).encode())
        elif isinstance(cert, str):
            pems.append(cert.encode())
        else:
            pems.append(cert.public_bytes(ssl._ssl.ENCODING_PEM).encode())  # type: ignore[attr-defined]
    return pems


def trusted_ca(chain: list[bytes], ca_cert_hash: str) -> bytes:
    """The CA from `chain` whose hash is `ca_cert_hash` and which signed the server's
    certificate; JoinError otherwise."""
    expected = _check_hash(ca_cert_hash)
    if not chain:
        raise JoinError("the control plane presented no certificate; refusing to join")
    leaf = pki.load_cert(chain[0])
    for pem in chain:
        if pki.ca_cert_hash(pem) == expected:
            if not pki.verify_issued_by(leaf, pki.load_cert(pem)):
                raise JoinError(
                    f"the CA {expected} did not sign the control plane's certificate; "
                    "refusing to join"
                )
            return pem
    presented = pki.ca_cert_hash(chain[-1])
    raise JoinError(
        f"the control plane's CA hash {presented} does not match --ca-cert-hash {expected}; "
        "refusing to join"
    )


async def discover_ca(
    join_address: str, ca_cert_hash: str, *, call_timeout: float = DEFAULT_TIMEOUT
) -> bytes:
    chain = await asyncio.to_thread(presented_chain, join_address, call_timeout=call_timeout)
    return trusted_ca(chain, ca_cert_hash)


async def join(
    *,
    join_address: str,
    token: str,
    ca_cert_hash: str,
    node_name: str,
    call_timeout: float = DEFAULT_TIMEOUT,
) -> NodeCredentials:
    """Steps 1-3 above: a node certificate for `node_name` in exchange for `token`.
    `join_address` may name several control-plane members ("a:7071,b:7071"): each is tried
    in turn until one answers (the last one's error is raised)."""
    _check_name(node_name)
    addresses = failover.split(join_address)
    for index, address in enumerate(addresses):
        try:
            ca_pem = await discover_ca(address, ca_cert_hash, call_timeout=call_timeout)
            result = await _sign(
                address,
                credentials.TlsMaterial(ca_pem=ca_pem),
                token=token,
                node_name=node_name,
                call_timeout=call_timeout,
            )
            break
        except JoinError as error:
            if index == len(addresses) - 1:
                raise
            log.warning("node.join_retry", address=address, error=str(error))
    log.info("node.joined", node=node_name, expires=result.cert.not_valid_after_utc.isoformat())
    return result


async def renew(
    *, address: str, current: NodeCredentials, call_timeout: float = DEFAULT_TIMEOUT
) -> NodeCredentials:
    """A fresh key and certificate for the same node, over mTLS with the current one."""
    node_name = current.node_name
    if node_name is None:
        raise JoinError("the current certificate is not a node certificate; join again")
    members = failover.split(address)  # several control-plane members: the first that answers
    for index, member in enumerate(members):
        try:
            result = await _sign(
                member, current.material, token="", node_name=node_name, call_timeout=call_timeout
            )
            break
        except JoinError:
            if index == len(members) - 1:
                raise
    if pki.ca_cert_hash(result.ca_pem) != pki.ca_cert_hash(current.ca_pem):
        raise JoinError("the control plane's CA changed during renewal; refusing the new one")
    log.info(
        "node.cert_renewed", node=node_name, expires=result.cert.not_valid_after_utc.isoformat()
    )
    return result


async def _sign(
    address: str,
    material: credentials.TlsMaterial,
    *,
    token: str,
    node_name: str,
    call_timeout: float,
) -> NodeCredentials:
    key = pki.new_key()
    csr = pki.create_csr(key, pki.node_identity(node_name))
    request = api.SignNodeCertificateRequest(token=token, node_name=node_name, csr_pem=csr.decode())
    async with credentials.secure_channel(address, material) as channel:
        try:
            response = await api_grpc.JoinStub(channel).SignNodeCertificate(
                request, timeout=call_timeout
            )
        except grpc.aio.AioRpcError as error:
            raise JoinError(_refusal(error, node_name=node_name, address=address)) from None
    cert = pki.load_cert(response.cert_pem.encode())
    ca = pki.load_cert(material.ca_pem)
    if not pki.verify_issued_by(cert, ca) or cert.public_key() != key.public_key():
        raise JoinError("the control plane returned a certificate that is not ours; refusing it")
    return NodeCredentials(
        ca_pem=material.ca_pem, cert_pem=response.cert_pem.encode(), key_pem=pki.key_pem(key)
    )


def _refusal(error: grpc.aio.AioRpcError, *, node_name: str, address: str) -> str:
    code = error.code()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"the control plane refused node {node_name!r}: {error.details()}"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return f"the control plane cannot sign for node {node_name!r}: {error.details()}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"cannot reach the control plane at {address}: {error.details()}"
    return f"joining failed ({code.name}): {error.details()}"


def _check_hash(value: str) -> str:
    try:
        return pki.check_hash_format(value)
    except pki.PkiError as error:
        raise JoinError(str(error)) from None


def _check_name(node_name: str) -> None:
    try:
        pki.check_node_name(node_name)
    except pki.PkiError as error:
        raise JoinError(str(error)) from None

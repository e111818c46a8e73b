"""The local cluster's credentials: what `up` reads from the control plane's PKI to join its
agents, check on its parts and point the CLI at the cluster (issue #7's secure mode).

The control plane makes its CA and certificates under `<controlplane-dir>/pki/` on first start
and writes `admin.conf` (the admin's CLI config) before `controlplane.addr`. From them:
- the admin's TLS material: the CLI's config points at these files, `up`'s probes and the
  join tokens' creation use them (one per node: bound to its name, single use, 10 minutes);
- the control plane's client certificate: the only identity an agent answers, so draining an
  agent at `down` dials with it (verifying the node's name);
- the CA's hash, which agents check before they trust the control plane (`--ca-cert-hash`).

Invariants: nothing here makes a certificate or a key (the control plane does); the join token
is created through the Tokens API with the admin's credentials, like `pilothouse token create`;
files are only read, so a restarted control plane finds them as it left them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from pilothouse import credentials, pki
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

ADMIN_CONFIG = "admin.conf"
JOIN_ADDRESS_FILE = "join.addr"
TOKEN_TTL_S = 600  # agents join within seconds of `up` starting them
TOKEN_DESCRIPTION = "pilothouse up: node"
CALL_TIMEOUT = 10.0


class SecurityError(RuntimeError):
    """The control plane's credentials are missing or unusable; the message says which."""


@dataclass(frozen=True, slots=True)
class ClusterCredentials:
    """Paths and material of one local cluster's PKI (see the module docstring)."""

    ca_cert: Path
    admin_cert: Path
    admin_key: Path
    admin: credentials.TlsMaterial
    controlplane_client: credentials.TlsMaterial
    ca_cert_hash: str

    @classmethod
    def load(cls, controlplane_dir: Path) -> ClusterCredentials:
        directory = controlplane_dir / "pki"
        paths = {
            "ca": directory / "ca.crt",
            "admin_cert": directory / "admin.crt",
            "admin_key": directory / "admin.key",
            "cp_cert": directory / "controlplane-client.crt",
            "cp_key": directory / "controlplane-client.key",
        }
        try:
            admin = credentials.load_files(
                ca_cert=paths["ca"], client_cert=paths["admin_cert"], client_key=paths["admin_key"]
            )
            controlplane = credentials.load_files(
                ca_cert=paths["ca"], client_cert=paths["cp_cert"], client_key=paths["cp_key"]
            )
        except credentials.CredentialsError as error:
            raise SecurityError(
                f"the control plane's credentials in {directory}: {error}"
            ) from None
        return cls(
            ca_cert=paths["ca"],
            admin_cert=paths["admin_cert"],
            admin_key=paths["admin_key"],
            admin=admin,
            controlplane_client=controlplane,
            ca_cert_hash=pki.ca_cert_hash(admin.ca_pem),
        )

    def client_settings(self) -> dict[str, str]:
        """The CLI config keys (pilothouse.config's names) for the admin's credentials."""
        return {
            "ca-cert": str(self.ca_cert),
            "client-cert": str(self.admin_cert),
            "client-key": str(self.admin_key),
        }


async def create_join_token(server: str, tls: credentials.TlsMaterial, *, node: str) -> str:
    """A bootstrap token for one agent, made as `pilothouse token create --for-node NODE
    --single-use --ttl 10m` does: short-lived, spent by its join, good for NODE only."""
    async with credentials.secure_channel(server, tls) as channel:
        stub = api_grpc.TokensStub(channel)
        try:
            created = await stub.CreateToken(
                api.CreateTokenRequest(
                    ttl_seconds=TOKEN_TTL_S,
                    description=f"{TOKEN_DESCRIPTION} {node}",
                    node_name=node,
                    single_use=True,
                ),
                timeout=CALL_TIMEOUT,
            )
        except grpc.aio.AioRpcError as error:
            raise SecurityError(
                f"the control plane at {server} made no join token: "
                f"{error.code().name}: {error.details()}"
            ) from None
    return created.token

"""Security for the control plane's gRPC server, in one object the API server wires in.

`Security.install(server, listen=…)` adds, in this order:
1. the Join and Tokens services;
2. the API port at `listen`: TLS that requires a client certificate from the cluster CA;
3. the join port at `join_listen`: TLS without client certificates (Join only, by the rules).
The authorizer's interceptor must be passed to `grpc.aio.server(interceptors=…)` when the
server is made (`Security.interceptors()`), since grpc.aio takes interceptors only there.

Invariant: the same handlers and the same authorizer serve both ports; the ports differ only
in whether the TLS layer asks for a client certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import structlog

from controlplane.auth.authorizer import Authorizer
from controlplane.auth.bootstrap import ClusterPki
from controlplane.auth.servicer import JoinServicer, TokensServicer
from controlplane.auth.tokens import TokenStore
from pilothouse.process.grpcserver import bind, bound_address
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Ports:
    api: int
    join: int


def join_listen_for(listen: str) -> str:
    """The default join address: the API's host, the API's port + 1 (port 0 stays 0)."""
    host, _, port = listen.rpartition(":")
    number = int(port) if port.isdigit() else 0
    return f"{host}:{number + 1 if number else 0}"


@dataclass
class Security:
    pki: ClusterPki
    tokens: TokenStore
    join_listen: str
    authorizer: Authorizer = field(default_factory=Authorizer)
    _tokens_servicer: TokensServicer | None = None

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [self.authorizer.interceptor()]

    def install(self, server: grpc.aio.Server, *, listen: str) -> Ports:
        api_grpc.add_JoinServicer_to_server(
            JoinServicer(ca=self.pki.ca, tokens=self.tokens), server
        )
        self._tokens_servicer = TokensServicer(
            tokens=self.tokens, ca_cert_hash=self.pki.ca_cert_hash
        )
        api_grpc.add_TokensServicer_to_server(self._tokens_servicer, server)
        api_port = bind(server, listen, self.pki.server_credentials(require_client_cert=True))
        join_port = bind(
            server, self.join_listen, self.pki.server_credentials(require_client_cert=False)
        )
        self._tokens_servicer.set_join_address(bound_address(self.join_listen, join_port))
        log.info("auth.ports", api_port=api_port, join_port=join_port)
        return Ports(api=api_port, join=join_port)

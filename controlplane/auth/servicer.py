"""The Join and Tokens services: thin gRPC servicers over the CA and the TokenStore.

Join.SignNodeCertificate signs a node's CSR for one of:
- a valid bootstrap token (the first join; any node name the token holder chooses);
- the node's own current certificate over mTLS, no token (renewal);
- an admin certificate.
Anything else is UNAUTHENTICATED with the token's own message (expired, revoked, unknown). A CSR
that does not ask for exactly `system:node:<node_name>` is INVALID_ARGUMENT.

Tokens.* are admin-only by the authorizer's rules; this servicer trusts that.
"""

from __future__ import annotations

import datetime

import grpc
import structlog
from google.protobuf import timestamp_pb2

from controlplane.auth.tokens import InvalidTokenId, TokenInfo, TokenNotFound, TokenStore
from controlplane.store import Unavailable
from pilothouse import credentials, pki
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

log = structlog.get_logger(__name__)


class JoinServicer(api_grpc.JoinServicer):
    def __init__(
        self,
        *,
        ca: pki.Issued,
        tokens: TokenStore,
        node_validity: datetime.timedelta = pki.NODE_VALIDITY,
    ) -> None:
        self._ca = ca
        self._tokens = tokens
        self._node_validity = node_validity

    async def SignNodeCertificate(
        self, request: api.SignNodeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> api.SignNodeCertificateResponse:
        identity = credentials.peer_identity(context)
        node = request.node_name
        how: str
        if request.token:
            try:
                check = await self._tokens.verify(request.token)
            except Unavailable as error:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            if not check.ok:
                log.warning(
                    "join.refused", node=node, token_id=check.token_id, verdict=check.verdict.value
                )
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, check.message)
            how = f"token {check.token_id}"
        elif identity is not None and identity.node_name == node and node:
            how = "renewal"
        elif identity is not None and identity.role is pki.Role.ADMIN:
            how = "admin"
        else:
            log.warning(
                "join.refused",
                node=node,
                identity=str(identity) if identity else "anonymous",
                verdict="no-token",
            )
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "a join token is required to get a node certificate "
                "(`pilothouse token create` on the control plane prints one)",
            )
        try:
            cert = pki.sign_node_csr(
                self._ca,
                request.csr_pem.encode(),
                node_name=node,
                valid_for=self._node_validity,
            )
        except pki.PkiError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        log.info(
            "join.signed",
            node=node,
            via=how,
            expires=cert.not_valid_after_utc.isoformat(),
        )
        return api.SignNodeCertificateResponse(
            cert_pem=pki.cert_pem(cert).decode(), ca_cert_pem=self._ca.cert_pem.decode()
        )


class TokensServicer(api_grpc.TokensServicer):
    def __init__(self, *, tokens: TokenStore, ca_cert_hash: str, join_address: str = "") -> None:
        self._tokens = tokens
        self._ca_cert_hash = ca_cert_hash
        self._join_address = join_address

    def set_join_address(self, address: str) -> None:
        """The join port is known only once it is bound."""
        self._join_address = address

    async def CreateToken(
        self, request: api.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> api.CreateTokenResponse:
        try:
            kwargs = {"ttl": float(request.ttl_seconds)} if request.ttl_seconds else {}
            created = await self._tokens.create(description=request.description, **kwargs)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        return api.CreateTokenResponse(
            token=created.token,
            info=_message(created.info, now=self._tokens_now()),
            ca_cert_hash=self._ca_cert_hash,
            join_address=self._join_address,
        )

    async def ListTokens(
        self, request: api.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> api.ListTokensResponse:
        try:
            infos = await self._tokens.list()
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        now = self._tokens_now()
        return api.ListTokensResponse(tokens=[_message(i, now=now) for i in infos])

    async def DeleteToken(
        self, request: api.DeleteTokenRequest, context: grpc.aio.ServicerContext
    ) -> api.DeleteTokenResponse:
        try:
            info = await self._tokens.delete(request.id)
        except InvalidTokenId as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except TokenNotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        return api.DeleteTokenResponse(token=_message(info, now=self._tokens_now()))

    def _tokens_now(self) -> float:
        return self._tokens.now()


def _message(info: TokenInfo, *, now: float) -> api.BootstrapToken:
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(int(info.created * 1e9))
    expires = timestamp_pb2.Timestamp()
    expires.FromNanoseconds(int(info.expires * 1e9))
    return api.BootstrapToken(
        id=info.id,
        description=info.description,
        created=created,
        expires=expires,
        state=info.state(now).value,
    )

"""The Join, Tokens and NodeAccess services: thin gRPC servicers over the CA, the TokenStore
and the node access rules (`controlplane.auth.admission`).

Join.SignNodeCertificate signs a node's CSR for one of:
- a valid bootstrap token with the `join` usage, for a node name the rules admit: a name no
  Node has, or whose Node has been NotReady for longer than the rejoin grace period, or one an
  admin approved (`node approve`, or a token made `--for-node` that name); a revoked name only
  with approval (PERMISSION_DENIED otherwise, saying how to approve). A single-use token is
  spent by the join; an approval too;
- the node's own current certificate over mTLS, no token (renewal), while its Node exists (the
  authorizer has already refused revoked certificates);
- an admin certificate.
Anything else is UNAUTHENTICATED with the token's own message (expired, revoked, used,
unknown, for another node). A CSR that does not ask for exactly `system:node:<node_name>` is
INVALID_ARGUMENT. A certificate is issued only once the second of a revocation has passed,
so the deny list never covers it.

Tokens.* and NodeAccess.* are admin-only by the authorizer's rules; this servicer trusts that.
"""

from __future__ import annotations

import datetime

import grpc
import structlog
from google.protobuf import timestamp_pb2

from controlplane.auth import admission
from controlplane.auth.revocations import Reason
from controlplane.auth.tokens import (
    InvalidTokenId,
    TokenInfo,
    TokenNotFound,
    TokenStore,
    Usage,
    parse_usages,
)
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
        access: admission.NodeAccessRules | None = None,
    ) -> None:
        self._ca = ca
        self._tokens = tokens
        self._node_validity = node_validity
        self._access = access

    async def SignNodeCertificate(
        self, request: api.SignNodeCertificateRequest, context: grpc.aio.ServicerContext
    ) -> api.SignNodeCertificateResponse:
        identity = credentials.peer_identity(context)
        node = request.node_name
        how: str
        try:
            if request.token:
                how = await self._by_token(request.token, node, context)
            elif identity is not None and identity.node_name == node and node:
                how = "renewal"
                await self._renewal(node, context)
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
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        if self._access is not None:
            await self._access.wait_past_revocation(node)  # the new certificate is not covered
        try:
            cert = pki.sign_node_csr(
                self._ca, request.csr_pem.encode(), node_name=node, valid_for=self._node_validity
            )
        except pki.PkiError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if self._access is not None and how != "renewal":
            await self._access.rejoined(node)
        log.info(
            "join.signed",
            node=node,
            via=how,
            expires=cert.not_valid_after_utc.isoformat(),
        )
        return api.SignNodeCertificateResponse(
            cert_pem=pki.cert_pem(cert).decode(), ca_cert_pem=self._ca.cert_pem.decode()
        )

    async def _by_token(self, token: str, node: str, context: grpc.aio.ServicerContext) -> str:
        """Check the token and the node name it is used for; spend what a join spends."""
        check = await self._tokens.verify(token, usage=Usage.JOIN, node=node)
        if not check.ok or check.info is None:
            log.warning(
                "join.refused", node=node, token_id=check.token_id, verdict=check.verdict.value
            )
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, check.message)
        assert check.info is not None
        try:
            pki.check_node_name(node)
        except pki.PkiError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        approval = admission.Admission.allowed()
        if self._access is not None:
            approval = await self._access.admit(node, bound=check.info.node == node)
            if not approval.ok:
                log.warning("join.refused", node=node, token_id=check.token_id, verdict="taken")
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, approval.reason)
        if not await self._tokens.consume(check.token_id):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f'the join token "{check.token_id}" was used meanwhile; create a new one',
            )
        spend = self._access is not None and approval.needs_approval and not approval.bound
        if spend and not await self._access.take_approval(node):  # type: ignore[union-attr]
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f'the approval for node "{node}" was used by another join meanwhile',
            )
        return f"token {check.token_id}" + (" (approved)" if approval.needs_approval else "")

    async def _renewal(self, node: str, context: grpc.aio.ServicerContext) -> None:
        """A node renews only while its Node exists (the authorizer refused revoked ones)."""
        if self._access is not None and not await self._access.node_exists(node):
            log.warning("join.refused", node=node, verdict="node-gone")
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f'node "{node}" no longer exists: its certificate is not renewed; join it '
                "again with a new token",
            )


class NodeAccessServicer(api_grpc.NodeAccessServicer):
    """`pilothouse node approve|revoke` (admin-only by the authorizer's rules)."""

    def __init__(self, access: admission.NodeAccessRules) -> None:
        self._access = access

    async def ApproveNode(
        self, request: api.ApproveNodeRequest, context: grpc.aio.ServicerContext
    ) -> api.ApproveNodeResponse:
        try:
            approval = await self._access.approvals.approve(
                request.node_name,
                **({"ttl": float(request.ttl_seconds)} if request.ttl_seconds else {}),
            )
        except (ValueError, pki.PkiError) as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        return api.ApproveNodeResponse(
            node_name=approval.node, expires=_timestamp(approval.expires)
        )

    async def RevokeNode(
        self, request: api.RevokeNodeRequest, context: grpc.aio.ServicerContext
    ) -> api.RevokeNodeResponse:
        try:
            revocation = await self._access.revocations.revoke(
                request.node_name, reason=Reason.REVOKED
            )
        except pki.PkiError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Unavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        return api.RevokeNodeResponse(
            node_name=revocation.node, revoked_at=_timestamp(revocation.at)
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
            if request.node_name:
                pki.check_node_name(request.node_name)
            created = await self._tokens.create(
                description=request.description,
                usages=parse_usages(list(request.usages)),
                node=request.node_name,
                single_use=request.single_use,
                **kwargs,
            )
        except (ValueError, pki.PkiError) as error:
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


def _timestamp(epoch: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(epoch * 1e9))
    return stamp


def _message(info: TokenInfo, *, now: float) -> api.BootstrapToken:
    return api.BootstrapToken(
        id=info.id,
        description=info.description,
        created=_timestamp(info.created),
        expires=_timestamp(info.expires),
        state=info.state(now).value,
        usages=[usage.value for usage in info.usages],
        node_name=info.node,
        single_use=info.single_use,
    )

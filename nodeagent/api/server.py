"""The agent's gRPC server: the NodeAgent service on one address.

Invariants (the shared `pilothouse.process.grpcserver.Server` keeps them): `start()` binds
before anything else serves, so a taken port is a clear startup error and `address` is the
real one (port 0 resolved). As a runnable, `run()` serves until cancelled and then stops with a
short grace period (open watches and log follows end). With `credentials` the port speaks TLS
only (the node's mutual TLS, see `nodeagent.main`), and `interceptors` see every call before
the servicer does (who may call, see `pilothouse.credentials.require_identity`); without them
it is plaintext, for standalone and `--insecure` agents.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from nodeagent.api.servicer import NodeAgentServicer
from nodeagent.api.streams import NodeUsageServicer, PodStreamsServicer
from pilothouse.process import grpcserver
from pilothouse.v1 import agent_pb2_grpc

_STOP_GRACE_SECONDS = 1.0


def agent_server(
    *,
    servicer: NodeAgentServicer,
    listen: str,
    streams: tuple[PodStreamsServicer, NodeUsageServicer] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpcserver.Server:
    """The runnable server ("api") that carries `servicer` on `listen`."""

    def setup(server: grpc.aio.Server) -> int:
        agent_pb2_grpc.add_NodeAgentServicer_to_server(servicer, server)
        if streams is not None:  # exec, attach, port-forward and usage (issue 16)
            agent_pb2_grpc.add_PodStreamsServicer_to_server(streams[0], server)
            agent_pb2_grpc.add_NodeUsageServicer_to_server(streams[1], server)
        return grpcserver.bind(server, listen, credentials)

    return grpcserver.Server(
        name="api",
        listen=listen,
        setup=setup,
        interceptors=interceptors,
        grace=_STOP_GRACE_SECONDS,
        limits=grpcserver.AGENT_LIMITS,
    )

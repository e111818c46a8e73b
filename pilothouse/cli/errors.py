"""What a person reads about a failure: one line per problem, no traceback.

Invariant: errors this code raises for people (client, usage, config, manifest, credentials)
are shown as their own message; a gRPC error as its code and details; an OS error as its
reason and file; anything else with its type, so it is never an empty line.
"""

from __future__ import annotations

import grpc

from pilothouse import config, credentials
from pilothouse.cli.resources import UsageError
from pilothouse.client import ClientError
from pilothouse.manifests import ManifestError


def describe_error(exc: BaseException) -> str:
    """What a person should read about a failure."""
    if isinstance(
        exc,
        ClientError
        | UsageError
        | config.ConfigError
        | ManifestError
        | credentials.CredentialsError,
    ):
        return str(exc)
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name.lower()}: {exc.details()}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text

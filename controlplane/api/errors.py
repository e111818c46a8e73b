"""The one place where domain errors become gRPC status codes.

| error                                     | code                |
|-------------------------------------------|---------------------|
| store.NotFound                            | NOT_FOUND           |
| store.AlreadyExists                       | ALREADY_EXISTS      |
| store.Conflict                            | ABORTED             |
| store.Compacted                           | FAILED_PRECONDITION |
| store.Unavailable                         | UNAVAILABLE         |
| ManifestError, objects.Invalid, a bad     | INVALID_ARGUMENT    |
| kind name or selector                     |                     |
| nodes.registry.NodeTaken                  | FAILED_PRECONDITION |
| nodes.registry.LabelsForbidden            | PERMISSION_DENIED   |
| nodes.registry.NotRegistered              | NOT_FOUND           |
| nodes.agent.AgentCallFailed               | the agent's code    |
|   (unreachable agent)                     | UNAVAILABLE         |
| anything else                             | INTERNAL (logged)   |

Field errors of an invalid object travel twice, so every client can read them:
- the status details string: one line per problem, `<field>: <message>`;
- the binary trailing metadata `pilothouse-field-errors-bin`: a serialized
  `pilothouse.v1.FieldErrors` (kept out of google.rpc.Status so that no extra dependency,
  grpcio-status, is needed; `field_errors(rpc_error)` reads it back).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import structlog

from controlplane.nodes.agent import AgentCallFailed
from controlplane.nodes.registry import LabelsForbidden, NodeTaken, NotRegistered
from controlplane.objects import Invalid
from controlplane.store import (
    AlreadyExists,
    Compacted,
    Conflict,
    NotFound,
    Unavailable,
)
from pilothouse.kinds import UnknownKind
from pilothouse.manifests.problems import ManifestError, Problem
from pilothouse.selectors import SelectorError
from pilothouse.v1 import controlplane_pb2

log = structlog.get_logger(__name__)

FIELD_ERRORS_KEY = "pilothouse-field-errors-bin"

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Conflict, grpc.StatusCode.ABORTED),
    (Compacted, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (ManifestError, grpc.StatusCode.INVALID_ARGUMENT),
    (Invalid, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownKind, grpc.StatusCode.INVALID_ARGUMENT),
    (SelectorError, grpc.StatusCode.INVALID_ARGUMENT),
    (NodeTaken, grpc.StatusCode.FAILED_PRECONDITION),
    (LabelsForbidden, grpc.StatusCode.PERMISSION_DENIED),
    (NotRegistered, grpc.StatusCode.NOT_FOUND),
)


class Failure(Exception):
    """A status a servicer wants to return directly (e.g. UNIMPLEMENTED)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The gRPC code and details for a known error; None for an unexpected one."""
    if isinstance(error, Failure):
        return error.code, error.details
    if isinstance(error, AgentCallFailed):
        if error.unreachable:
            return grpc.StatusCode.UNAVAILABLE, error.message
        return getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN), error.message
    for kind, code in _CODES:
        if isinstance(error, kind):
            if isinstance(error, Unavailable):
                return code, f"etcd is unavailable: {error}; the control plane keeps retrying"
            return code, str(error)
    return None


def trailing_metadata(error: BaseException) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(error, ManifestError):
        return ()
    details = controlplane_pb2.FieldErrors()
    for problem in error.problems:
        details.errors.add(
            file=problem.file,
            document=problem.document,
            field=problem.field,
            message=problem.message,
        )
    return ((FIELD_ERRORS_KEY, details.SerializeToString()),)


@contextlib.asynccontextmanager
async def translated(context: grpc.aio.ServicerContext, *, method: str) -> AsyncIterator[None]:
    """Run a servicer body; turn any error it raises into the matching status."""
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception as error:
        status = status_of(error)
        if status is None:
            log.error("api.failed", method=method, exc_info=True)
            status = (grpc.StatusCode.INTERNAL, f"internal error in {method}: {error!r}")
        else:
            log.debug("api.refused", method=method, code=status[0].name, error=status[1])
        await context.abort(status[0], status[1], trailing_metadata=trailing_metadata(error))


def field_errors(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[Problem]:
    """The field errors an INVALID_ARGUMENT status carries (for clients and tests)."""
    metadata = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == FIELD_ERRORS_KEY:
            details = controlplane_pb2.FieldErrors.FromString(value)
            return [Problem(e.file, e.document, e.field, e.message) for e in details.errors]
    return []

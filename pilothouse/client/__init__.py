"""The control-plane client: the ControlPlane gRPC API as plain async methods over objects.

- `connection`: `Client`, one channel to a control plane, and what its calls return;
- `errors`: `ClientError` and how a gRPC failure becomes a message a person can act on;
- `fielderrors`: the field errors a rejected object comes back with (trailing metadata).

Invariants: callers pass and receive object messages (Deployment, Pod …) and `Kind`s, never
request/response messages; every gRPC failure leaves this package as a `ClientError` whose
message a person can act on (`deployments "web" not found`, the field errors one per line,
`cannot reach the control plane at …`). One channel per `Client`; unary calls carry a deadline,
streams (watch, logs) do not.

The names below are the package's API (`from pilothouse.client import Client, ClientError`).
"""

from pilothouse.client.connection import (
    DEFAULT_TIMEOUT,
    Applied,
    ApplyResult,
    Change,
    ChangeType,
    Client,
    Listed,
)
from pilothouse.client.errors import (
    PLAINTEXT_HINT,
    ClientError,
    ErrorCode,
    connection_failure,
    translate,
    unreachable_message,
)
from pilothouse.client.fielderrors import (
    FIELD_ERRORS_METADATA,
    STATUS_DETAILS_METADATA,
    FieldProblem,
    field_problems,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "FIELD_ERRORS_METADATA",
    "PLAINTEXT_HINT",
    "STATUS_DETAILS_METADATA",
    "Applied",
    "ApplyResult",
    "Change",
    "ChangeType",
    "Client",
    "ClientError",
    "ErrorCode",
    "FieldProblem",
    "Listed",
    "connection_failure",
    "field_problems",
    "translate",
    "unreachable_message",
]

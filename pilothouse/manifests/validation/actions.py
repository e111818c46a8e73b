"""What an httpGet or tcpSocket action may send: path, headers and host, checked at apply.

The node agent turns these fields into an HTTP request or a connection (probes, and preStop
hooks), so anything that could change the request's shape is refused here, with its field
path, before it is stored:
- header names are HTTP tokens as Kubernetes accepts them (`[-A-Za-z0-9]+`, its own words);
- header values are printable text: no control characters (CR, LF, NUL, …; tab is allowed, as
  RFC 9110 allows it), so a value can never end its line and start another header or request;
- the path starts with "/" (Kubernetes' default is "/", so an empty one is defaulted before
  this runs) and holds no control characters or spaces: it is the request line's target;
- the host, when set, is an IP address or a DNS-1123 subdomain. Whether a host may be set at
  all is the cluster's decision (`validation.policy`), not the syntax's.

Invariant: every problem is reported (never only the first), each with the field's path.
"""

from __future__ import annotations

import ipaddress
import re

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

_HEADER_NAME = "[-A-Za-z0-9]+"
_header_name = re.compile(f"^{_HEADER_NAME}$")
_HEADER_NAME_MESSAGE = (
    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. "
    f"'X-Header-Name', regex used for validation is '{_HEADER_NAME}')"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but tab
_PATH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")  # controls, tab and space


def http_get(found: Findings, action: objects_pb2.HTTPGetAction, path: str) -> None:
    """The request an httpGet action makes: path, headers and host."""
    if not action.path:
        found.required(f"{path}.path")
    elif not action.path.startswith("/"):
        found.invalid(f"{path}.path", action.path, "must start with '/'")
    if _PATH_FORBIDDEN.search(action.path):
        found.invalid(f"{path}.path", action.path, "must not contain spaces or control characters")
    for i, header in enumerate(action.http_headers):
        where = f"{path}.httpHeaders[{i}]"
        if not header.name:
            found.required(f"{where}.name")
        elif not _header_name.match(header.name):
            found.invalid(f"{where}.name", header.name, _HEADER_NAME_MESSAGE)
        if _CONTROL.search(header.value):
            found.invalid(
                f"{where}.value",
                header.value,
                "must not contain control characters (CR, LF, NUL …): a header value is one "
                "line of text",
            )
    host(found, action.host, f"{path}.host")


def host(found: Findings, value: str, field: str) -> None:
    """A probe's or hook's `host`: empty (the pod), an IP address or a DNS-1123 subdomain."""
    if not value:
        return
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if names.dns1123_subdomain(value):
        found.invalid(field, value, "must be a valid IP address or a DNS-1123 subdomain")

"""A container's lifecycle hooks: `preStop` and `postStart`, each with exactly one action
(exec, httpGet, tcpSocket or sleep), as Kubernetes' validateLifecycle checks them.
"""

from __future__ import annotations

from google.protobuf.struct_pb2 import Value

from pilothouse.manifests import names
from pilothouse.manifests.validation import actions
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

_ACTIONS = (("exec", "exec"), ("http_get", "httpGet"), ("tcp_socket", "tcpSocket"),
            ("sleep", "sleep"))  # fmt: skip


_HOOKS = (("pre_stop", "preStop"), ("post_start", "postStart"))


def lifecycle(
    found: Findings, container: objects_pb2.Container, path: str, *, grace_seconds: int | None
) -> None:
    if not container.HasField("lifecycle"):
        return
    for field, json_name in _HOOKS:
        if container.lifecycle.HasField(field):
            _hook(
                found,
                getattr(container.lifecycle, field),
                f"{path}.lifecycle.{json_name}",
                grace_seconds=grace_seconds,
            )


def _hook(
    found: Findings, hook: objects_pb2.LifecycleHandler, where: str, *, grace_seconds: int | None
) -> None:
    present = [json_name for field, json_name in _ACTIONS if hook.HasField(field)]
    if not present:
        found.required(where, "must specify a handler type")
    for json_name in present[1:]:
        found.forbidden(f"{where}.{json_name}", "may not specify more than 1 handler type")
    if hook.HasField("exec") and not hook.exec.command:
        found.required(f"{where}.exec.command")
    if hook.HasField("http_get"):
        _port(found, hook.http_get.port, f"{where}.httpGet.port", hook.http_get.HasField("port"))
        schemes = ("HTTP", "HTTPS")
        if hook.http_get.scheme and hook.http_get.scheme not in schemes:
            found.unsupported(f"{where}.httpGet.scheme", hook.http_get.scheme, schemes)
        actions.http_get(found, hook.http_get, f"{where}.httpGet")  # as for probes
    if hook.HasField("tcp_socket"):
        _port(
            found, hook.tcp_socket.port, f"{where}.tcpSocket.port", hook.tcp_socket.HasField("port")
        )
        actions.host(found, hook.tcp_socket.host, f"{where}.tcpSocket.host")
    if hook.HasField("sleep"):
        seconds = hook.sleep.seconds
        limit = grace_seconds if grace_seconds is not None else 30
        if seconds <= 0 or seconds > limit:
            found.invalid(
                f"{where}.sleep.seconds",
                seconds,
                f"must be greater than 0 and less than terminationGracePeriodSeconds ({limit})",
            )


def _port(found: Findings, port: Value, field: str, present: bool) -> None:
    if not present:
        found.required(field)
        return
    if port.HasField("string_value"):
        text = port.string_value
        if text.isdigit():
            found.invalid(field, text, "must contain at least one letter (a-z)")
            return
        for error in names.port_name(text):
            found.invalid(field, text, error)
    elif port.HasField("number_value") and port.number_value.is_integer():
        if not 1 <= int(port.number_value) <= 65535:
            found.invalid(field, int(port.number_value), "must be between 1 and 65535, inclusive")
    else:
        found.invalid(field, str(port.number_value), "must be an integer or a port name")

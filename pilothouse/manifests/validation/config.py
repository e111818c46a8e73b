"""ConfigMaps and Secrets: key names, the 1 MiB size limit, and each Secret type's keys.

Rules (core/v1 validation):
- every key of `data` and `binaryData` (Secrets: `data`, with `stringData` already merged in
  by the defaults) is a config key: `[-._a-zA-Z0-9]+`, at most 253 characters, not "." or
  ".." and not starting with ".."; a ConfigMap key is in `data` or `binaryData`, not both;
- all values together are at most 1 MiB (1048576 bytes), as in Kubernetes;
- a Secret's `type` decides which keys it must have (`kubernetes.io/dockerconfigjson`:
  `.dockerconfigjson`, holding JSON; `kubernetes.io/tls`: `tls.crt` and `tls.key` …).

Invariant: a message never quotes a Secret's value (Kubernetes writes "<secret contents
redacted>" instead): validation errors travel to logs and terminals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

MAX_SIZE = 1024 * 1024  # bytes, ConfigMaps and Secrets alike (corevalidation.MaxSecretSize)
MAX_KEY_LENGTH = 253
REDACTED = "<secret contents redacted>"
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MESSAGE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
    "'[-._a-zA-Z0-9]+')"
)

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
DOCKER_CFG_KEY = ".dockercfg"
# type -> keys it must hold (any one of them, for basic-auth).
_REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], bool]] = {
    DOCKER_CONFIG_JSON: ((DOCKER_CONFIG_JSON_KEY,), True),
    DOCKER_CFG: ((DOCKER_CFG_KEY,), True),
    "kubernetes.io/tls": (("tls.crt", "tls.key"), True),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",), True),
    "kubernetes.io/basic-auth": (("username", "password"), False),
}
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
SERVICE_ACCOUNT_ANNOTATION = "kubernetes.io/service-account.name"


def key_errors(key: str) -> list[str]:
    """Why `key` is not a valid ConfigMap/Secret key (empty: it is)."""
    errors = []
    if len(key) > MAX_KEY_LENGTH:
        errors.append(f"must be no more than {MAX_KEY_LENGTH} characters")
    if not _KEY.match(key):
        errors.append(_KEY_MESSAGE)
    if key == ".":
        errors.append("must not be '.'")
    elif key == "..":
        errors.append("must not be '..'")
    elif key.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def config_map(found: Findings, message: objects_pb2.ConfigMap) -> None:
    _keys(found, "data", message.data)
    _keys(found, "binaryData", message.binary_data)
    for key in sorted(message.binary_data):
        if key in message.data:
            found.invalid(f"binaryData[{key}]", key, "duplicate of key present in data")
    size = sum(len(v.encode()) for v in message.data.values())
    size += sum(len(v) for v in message.binary_data.values())
    _size(found, "data", size)


def secret(found: Findings, message: objects_pb2.Secret) -> None:
    _keys(found, "data", message.data)
    _keys(found, "stringData", message.string_data)
    size = sum(len(v) for v in message.data.values())
    size += sum(len(v.encode()) for v in message.string_data.values())
    _size(found, "data", size)
    data = {**message.data, **{k: v.encode() for k, v in message.string_data.items()}}
    kind = message.type
    if kind in _REQUIRED_KEYS:
        keys, every = _REQUIRED_KEYS[kind]
        missing = [k for k in keys if k not in data]
        if every:
            for key in missing:
                found.required(f"data[{key}]")
        elif len(missing) == len(keys):
            found.required(
                f"data[{keys[0]}]", f"must have at least one of the keys {', '.join(keys)}"
            )
    if kind in (DOCKER_CONFIG_JSON, DOCKER_CFG):
        key = DOCKER_CONFIG_JSON_KEY if kind == DOCKER_CONFIG_JSON else DOCKER_CFG_KEY
        if key in data:
            try:
                json.loads(data[key])
            except (ValueError, UnicodeDecodeError) as exc:
                found.invalid(f"data[{key}]", REDACTED, f"not valid JSON: {_json_reason(exc)}")
    annotations = message.metadata.annotations
    if kind == SERVICE_ACCOUNT_TOKEN and not annotations.get(SERVICE_ACCOUNT_ANNOTATION):
        found.required(f"metadata.annotations[{SERVICE_ACCOUNT_ANNOTATION}]")


def _keys(found: Findings, field: str, keys: Iterable[str]) -> None:
    for key in sorted(keys):
        for error in key_errors(key):
            found.invalid(f"{field}[{key}]", key, error)


def _size(found: Findings, field: str, size: int) -> None:
    if size > MAX_SIZE:
        found.items.append(
            (field, f"Too long: must have at most {MAX_SIZE} bytes (these values hold {size})")
        )


def _json_reason(exc: Exception) -> str:
    """Where the JSON broke, without quoting any of it (it may be a credential)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "not UTF-8 text"

"""Turning a parsed YAML/JSON mapping into an object message, reporting every type error at once.

Invariants: the mapping is walked against the message descriptor before protobuf sees it, so
each unknown field and each value of the wrong type is reported with its full path in the JSON
names a person wrote, all in one pass; only a mapping with no such error reaches
`json_format.ParseDict`. Only camelCase JSON names are accepted (as Kubernetes does). `null`
means "unset". Quantity maps accept YAML numbers and store the Kubernetes string form;
IntOrString fields (google.protobuf.Value) accept an integer or a string and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from pilothouse import quantity

# Maps whose values are quantities: YAML may write them as bare numbers (`cpu: 2`).
QUANTITY_MAPS = frozenset(
    {
        "pilothouse.v1.ResourceRequirements.limits",
        "pilothouse.v1.ResourceRequirements.requests",
        "pilothouse.v1.NodeStatus.capacity",
        "pilothouse.v1.NodeStatus.allocatable",
    }
)

# Single quantity fields: YAML may write them as bare numbers (`divisor: 1`).
QUANTITY_FIELDS = frozenset(
    {
        "pilothouse.v1.EmptyDirVolumeSource.size_limit",
        "pilothouse.v1.ResourceFieldSelector.divisor",
    }
)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Kubernetes fields people commonly write that Pilothouse does not implement: still errors,
# but the message says the field is real, so nobody hunts for a typo that is not there.
KUBERNETES_ONLY = frozenset(
    {
        "affinity",
        "allocateLoadBalancerNodePorts",
        "appArmorProfile",
        "awsElasticBlockStore",
        "clusterTrustBundle",
        "csi",
        "enableServiceLinks",
        "ephemeral",
        "ephemeralContainers",
        "hostIPC",
        "hostPID",
        "nfs",
        "preemptionPolicy",
        "procMount",
        "readinessGates",
        "resizePolicy",
        "runtimeClassName",
        "seLinuxOptions",
        "serviceAccountToken",
        "setHostnameAsFQDN",
        "windowsOptions",
        "automountServiceAccountToken",
        "envFrom",
        "externalIPs",
        "externalName",
        "externalTrafficPolicy",
        "finalizers",
        "healthCheckNodePort",
        "hints",
        "hostNetwork",
        "imagePullSecrets",
        "initContainers",
        "internalTrafficPolicy",
        "ipFamilies",
        "ipFamilyPolicy",
        "loadBalancerClass",
        "loadBalancerIP",
        "loadBalancerSourceRanges",
        "managedFields",
        "matchExpressions",
        "priorityClassName",
        "securityContext",
        "serviceAccountName",
        "stdin",
        "tolerations",
        "topologySpreadConstraints",
        "tty",
        "valueFrom",
        "volumeMounts",
        "volumes",
        "zone",
    }
)
UNKNOWN = "unknown field"
NOT_SUPPORTED = "unknown field (a Kubernetes field that Pilothouse does not support)"

_YAML_BOOL_HINT = " (YAML reads unquoted true/false/yes/no/on/off as booleans: quote it)"
_YAML_NUMBER_HINT = " (YAML reads unquoted numbers as numbers: quote it)"

Errors = list[tuple[str, str]]


def describe(value: Any) -> str:
    """How a value appears in a message: strings quoted, booleans as YAML writes them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return json.dumps(str(value))


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def to_message(data: Mapping[str, Any], message_type: type[Message]) -> tuple[Message, Errors]:
    """Decode `data` onto a new `message_type`; the message is meaningful only without errors."""
    errors: Errors = []
    clean = _message(data, message_type.DESCRIPTOR, "", errors)
    message = message_type()
    if not errors:
        try:
            json_format.ParseDict(clean, message)
        except json_format.ParseError as exc:  # a case the walk missed: still say something
            errors.append(("", str(exc)))
    return message, errors


def _message(data: Any, descriptor: Descriptor, path: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        errors.append((path, f"must be a mapping, got {describe(data)}"))
        return {}
    fields = {fd.json_name: fd for fd in descriptor.fields}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            errors.append((join(path, str(key)), UNKNOWN))
            continue
        where = join(path, key)
        fd = fields.get(key)
        if fd is None:
            errors.append((where, NOT_SUPPORTED if key in KUBERNETES_ONLY else UNKNOWN))
            continue
        if value is None:
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            result = _map(value, fd, where, errors)
        elif fd.is_repeated:
            if not isinstance(value, list):
                errors.append((where, f"must be a list, got {describe(value)}"))
                continue
            result = [_single(item, fd, f"{where}[{i}]", errors) for i, item in enumerate(value)]
        else:
            result = _single(value, fd, where, errors)
        clean[key] = result
    return clean


def _map(value: Any, fd: FieldDescriptor, path: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        errors.append((path, f"must be a mapping, got {describe(value)}"))
        return {}
    value_fd = fd.message_type.fields_by_name["value"]
    is_quantity = fd.full_name in QUANTITY_MAPS
    clean: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}[{key}]"
        if not isinstance(key, str):
            errors.append((where, f"keys must be strings, got {describe(key)}"))
            continue
        if item is None:
            if value_fd.type == FieldDescriptor.TYPE_STRING:
                clean[key] = ""
            continue
        if is_quantity and isinstance(item, int | float) and not isinstance(item, bool):
            try:
                clean[key] = quantity.canonical(item)
            except quantity.QuantityError as exc:
                errors.append((where, str(exc)))
            continue
        clean[key] = _single(item, value_fd, where, errors)
    return clean


def _single(value: Any, fd: FieldDescriptor, path: str, errors: Errors) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        full_name = fd.message_type.full_name
        if full_name == "google.protobuf.Value":
            return _int_or_string(value, path, errors)
        if full_name == "google.protobuf.Timestamp":
            return _timestamp(value, path, errors)
        return _message(value, fd.message_type, path, errors)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return _base64(value, path, errors)
    if fd.type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        if (
            fd.full_name in QUANTITY_FIELDS
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            try:
                return quantity.canonical(value)
            except quantity.QuantityError as exc:
                errors.append((path, str(exc)))
                return ""
        if isinstance(value, datetime.datetime | datetime.date):
            return value.isoformat()  # YAML read an unquoted date; Kubernetes keeps the text
        hint = ""
        if isinstance(value, bool):
            hint = _YAML_BOOL_HINT
        elif isinstance(value, int | float):
            hint = _YAML_NUMBER_HINT
        errors.append((path, f"must be a string, got {describe(value)}{hint}"))
        return ""
    if fd.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        errors.append((path, f"must be true or false, got {describe(value)}"))
        return False
    if fd.type in _INT_RANGES:
        number = value
        if isinstance(value, float) and value.is_integer():
            number = int(value)
        if not isinstance(number, int) or isinstance(number, bool):
            errors.append((path, f"must be an integer, got {describe(value)}"))
            return 0
        low, high = _INT_RANGES[fd.type]
        if not low <= number <= high:
            errors.append((path, f"must be an integer between {low} and {high}, got {number}"))
            return 0
        return number
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        errors.append((path, f"must be a number, got {describe(value)}"))
        return 0
    errors.append((path, "has a type that manifests cannot set"))  # pragma: no cover
    return None  # pragma: no cover


def _base64(value: Any, path: str, errors: Errors) -> str:
    """Bytes (a Secret's data, a ConfigMap's binaryData) are standard base64 text, as in
    Kubernetes; line breaks inside are allowed (Go's decoder skips them)."""
    if not isinstance(value, str):
        errors.append((path, f"must be a base64-encoded string, got {describe(value)}"))
        return ""
    text = value.replace("\n", "").replace("\r", "")
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        at = _first_bad_base64(text)
        errors.append((path, f"illegal base64 data at input byte {at}"))
        return ""
    return text


def _first_bad_base64(text: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for i, char in enumerate(text):
        if char not in alphabet:
            return i
    return len(text)


def _int_or_string(value: Any, path: str, errors: Errors) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    hint = _YAML_BOOL_HINT if isinstance(value, bool) else ""
    errors.append((path, f"must be an integer or a string, got {describe(value)}{hint}"))
    return 0


def _timestamp(value: Any, path: str, errors: Errors) -> str:
    stamp = Timestamp()
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        stamp.FromDatetime(value)
        return stamp.ToJsonString()
    if isinstance(value, str):
        try:
            stamp.FromJsonString(value)
        except ValueError:
            errors.append((path, f"must be an RFC 3339 timestamp, got {describe(value)}"))
            return ""
        return value
    errors.append((path, f"must be an RFC 3339 timestamp, got {describe(value)}"))
    return ""

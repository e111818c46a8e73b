"""Printing objects as kubectl does: `kind.group/name` references and `-o json|yaml|name`.

Invariants: JSON and YAML are the Kubernetes object shape (`pilothouse.cli.shape.to_k8s`) with keys
sorted, as kubectl prints them; several objects print as one `kind: List`. Names of resources
read `deployment.apps/web` (kind lower-case, API group when it has one), as in kubectl output.
The object shape (and with it the manifests package) and YAML are imported only when an object
is printed in them: a table costs neither.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from pilothouse import kinds
from pilothouse.kinds import Kind


class Format(enum.Enum):
    TABLE = ""
    WIDE = "wide"
    YAML = "yaml"
    JSON = "json"
    NAME = "name"


FORMAT_CHOICES = [f.value for f in Format if f.value]


def qualified(kind: Kind) -> str:
    """`deployment.apps`, `pod`: the lower-case kind with its API group, as kubectl names it."""
    group = kind.info.api_version.rpartition("/")[0]
    base = kind.info.kind.lower()
    return f"{base}.{group}" if group else base


def reference(kind: Kind, name: str) -> str:
    """`deployment.apps/web`."""
    return f"{qualified(kind)}/{name}"


def quoted(kind: Kind, name: str) -> str:
    """`deployment.apps "web"`, as kubectl's delete prints it."""
    return f'{qualified(kind)} "{name}"'


def name_of(message: Message) -> str:
    return reference(kinds.of_message(message), message.metadata.name)  # type: ignore[attr-defined]


def as_list(items: Sequence[Message]) -> dict[str, Any]:
    from pilothouse.cli import shape

    return {
        "apiVersion": "v1",
        "items": [shape.to_k8s(item) for item in items],
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def dump_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False)


def dump_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(
        data, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1 << 20
    )


def render(items: Sequence[Message], fmt: Format, *, single: bool) -> str:
    """Objects in a structured format; `single` prints one object rather than a List."""
    if fmt is Format.NAME:
        return "\n".join(name_of(item) for item in items)
    from pilothouse.cli import shape

    data = shape.to_k8s(items[0]) if single and len(items) == 1 else as_list(items)
    if fmt is Format.JSON:
        return dump_json(data)
    return dump_yaml(data).rstrip("\n")

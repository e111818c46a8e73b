"""Where an object is stored, and how messages name it.

Invariants: a namespaced object's key is /pilothouse/<plural>/<namespace>/<name> (an empty
namespace means "default"); a cluster-scoped object's is /pilothouse/<plural>/<name> whatever
namespace it was given. Messages name objects as kubectl does: `deployments "web"`.
"""

from __future__ import annotations

from pilothouse.kinds import DEFAULT_NAMESPACE, Kind

ROOT = "/pilothouse"


def key_prefix(kind: Kind, namespace: str | None = None) -> str:
    """The prefix of every key of `kind` (in `namespace` when given); ends with "/"."""
    base = f"{ROOT}/{kind.info.plural}/"
    if namespace and kind.info.namespaced:
        return f"{base}{namespace}/"
    return base


def object_key(kind: Kind, namespace: str, name: str) -> str:
    if kind.info.namespaced:
        return f"{ROOT}/{kind.info.plural}/{namespace or DEFAULT_NAMESPACE}/{name}"
    return f"{ROOT}/{kind.info.plural}/{name}"


def namespace_for(kind: Kind, namespace: str | None) -> str:
    """The namespace an object of `kind` lives in: "" when cluster-scoped, else the default."""
    if not kind.info.namespaced:
        return ""
    return namespace or DEFAULT_NAMESPACE


def describe(kind: Kind, namespace: str, name: str) -> str:
    """How an object is named in messages: `deployments "web"` (kubectl's wording)."""
    where = f' in namespace "{namespace}"' if kind.info.namespaced and namespace else ""
    return f'{kind.info.plural} "{name}"{where}'


def conflict_message(kind: Kind, namespace: str, name: str) -> str:
    return (
        f"Operation cannot be fulfilled on {describe(kind, namespace, name)}: the object has "
        "been modified; please apply your changes to the latest version and try again"
    )

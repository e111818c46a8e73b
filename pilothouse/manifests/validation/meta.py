"""Object metadata and label maps, checked the same way for every kind."""

from __future__ import annotations

from collections.abc import Mapping

from pilothouse.manifests import names
from pilothouse.manifests.validation.findings import Findings
from pilothouse.v1 import objects_pb2

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def metadata(found: Findings, meta: objects_pb2.ObjectMeta, *, namespaced: bool) -> None:
    if not meta.name and not meta.generate_name:
        found.required("metadata.name", "name or generateName is required")
    elif meta.name:
        for error in names.dns1123_subdomain(meta.name):
            found.invalid("metadata.name", meta.name, error)
    if namespaced and meta.namespace:
        for error in names.dns1123_label(meta.namespace):
            found.invalid("metadata.namespace", meta.namespace, error)
    labels(found, "metadata.labels", meta.labels)
    size = 0
    for key, value in meta.annotations.items():
        for error in names.qualified_name(key.lower()):
            found.invalid("metadata.annotations", key, error)
        size += len(key) + len(value)
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        found.items.append(
            (
                "metadata.annotations",
                f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
            )
        )


def labels(found: Findings, field: str, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        for error in names.qualified_name(key):
            found.invalid(field, key, error)
        for error in names.label_value(value):
            found.invalid(field, value, error)

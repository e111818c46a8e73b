"""Reading manifests from files, directories and stdin into defaulted object messages.

Invariants: a source is a file, a directory (its *.yaml, *.yml and *.json files, sorted by name,
not recursing) or "-" for stdin. Every document of every source is examined before anything is
returned; if any one is invalid, `load` raises a `ManifestError` listing every problem of every
source, so a caller that writes the result writes all of it or none of it. Documents are
numbered from 1 within their file, counting empty ones so the number matches what a person
counts; empty documents produce no object.

Bounded inputs (issue 11): a source larger than `MAX_SOURCE_BYTES` (3 MiB, the Kubernetes API
server's request limit) is refused without reading the rest of it; before any document is
built, the YAML's events are scanned and a manifest nested deeper than `MAX_DEPTH` levels, or
whose aliases would expand it to more than `MAX_NODES` nodes (a "billion laughs"), is refused
with the line where it went over. Objects that reach the control plane over the API are bounded
by its 4 MiB message limit and the schema's own nesting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from google.protobuf.message import Message

from pilothouse import kinds
from pilothouse.manifests import defaults, validation
from pilothouse.manifests.decode import describe, to_message
from pilothouse.manifests.problems import ManifestError, Problem

MAX_SOURCE_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
STDIN = "-"
STDIN_NAME = "<stdin>"
EXTENSIONS = (".yaml", ".yml", ".json")

# (apiVersion, kind) -> Kind: what a manifest may create.
SUPPORTED: dict[tuple[str, str], kinds.Kind] = {
    ("apps/v1", "Deployment"): kinds.Kind.DEPLOYMENT,
    ("v1", "Pod"): kinds.Kind.POD,
    ("v1", "Node"): kinds.Kind.NODE,
    ("v1", "Service"): kinds.Kind.SERVICE,
    ("discovery.k8s.io/v1", "EndpointSlice"): kinds.Kind.ENDPOINTSLICE,
    ("apps/v1", "ReplicaSet"): kinds.Kind.REPLICASET,
    ("apps/v1", "DaemonSet"): kinds.Kind.DAEMONSET,
    ("apps/v1", "StatefulSet"): kinds.Kind.STATEFULSET,
    ("batch/v1", "Job"): kinds.Kind.JOB,
    ("batch/v1", "CronJob"): kinds.Kind.CRONJOB,
    ("v1", "ReplicationController"): kinds.Kind.REPLICATIONCONTROLLER,
    ("v1", "Namespace"): kinds.Kind.NAMESPACE,
    ("v1", "ServiceAccount"): kinds.Kind.SERVICEACCOUNT,
    ("v1", "PersistentVolumeClaim"): kinds.Kind.PERSISTENTVOLUMECLAIM,
    ("v1", "PersistentVolume"): kinds.Kind.PERSISTENTVOLUME,
    ("storage.k8s.io/v1", "StorageClass"): kinds.Kind.STORAGECLASS,
    ("v1", "ConfigMap"): kinds.Kind.CONFIGMAP,
    ("v1", "Secret"): kinds.Kind.SECRET,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): kinds.Kind.HORIZONTALPODAUTOSCALER,
}
_SUPPORTED_TEXT = ", ".join(f"{v} {k}" for v, k in SUPPORTED)


@dataclass(frozen=True, slots=True)
class Document:
    """One object read from a manifest, defaults applied. `index` counts from 1 in `source`."""

    source: str
    index: int
    kind: kinds.Kind
    message: Message


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """The safe loader (libyaml's when present) refusing duplicate keys, as Kubernetes does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f'key "{key}" already set in map',
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(sources: Sequence[str], *, stdin: TextIO | None = None) -> list[Document]:
    """Every object of every source, defaulted and validated; `ManifestError` if any is bad."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for source in sources:
        for name, text, problem in _read(source, stdin):
            if problem is not None:
                problems.append(problem)
                continue
            found, bad = parse(text, source=name)
            documents.extend(found)
            problems.extend(bad)
    if problems:
        raise ManifestError(problems)
    return documents


def _read(source: str, stdin: TextIO | None) -> Iterator[tuple[str, str, Problem | None]]:
    if source == STDIN:
        text = (stdin or sys.stdin).read(MAX_SOURCE_BYTES + 1)
        yield STDIN_NAME, text, _too_large(STDIN_NAME, len(text.encode()))
        return
    if os.path.isdir(source):
        files = sorted(entry for entry in os.listdir(source) if entry.lower().endswith(EXTENSIONS))
        files = [f for f in files if os.path.isfile(os.path.join(source, f))]
        if not files:
            yield source, "", Problem(source, 0, "", "directory has no .yaml, .yml or .json files")
        for entry in files:
            yield from _read(os.path.join(source, entry), stdin)
        return
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read(MAX_SOURCE_BYTES + 1)
            yield source, text, _too_large(source, len(text.encode()))
    except FileNotFoundError:
        yield source, "", Problem(source, 0, "", f'the path "{source}" does not exist')
    except UnicodeDecodeError as exc:
        yield source, "", Problem(source, 0, "", f"is not UTF-8 text ({exc.reason})")
    except OSError as exc:
        yield source, "", Problem(source, 0, "", f"cannot be read: {exc.strerror}")


def _too_large(source: str, size: int) -> Problem | None:
    if size <= MAX_SOURCE_BYTES:
        return None
    return Problem(
        source,
        0,
        "",
        f"is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB: split it into several files",
    )


def _shape_problem(text: str, *, source: str) -> Problem | None:
    """A manifest too deep or too large once its aliases expand, found from the YAML's events
    alone (nothing is built); None when its shape is fine, or for YAML errors (the loader
    reports those with their own words)."""
    depth = 0
    nodes = 0
    starts: list[tuple[str | None, int]] = []  # (anchor, nodes before it) per open collection
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    document = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                document += 1
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                nodes += 1
                if depth > MAX_DEPTH:
                    return _shape(
                        source, document, event, f"is nested deeper than {MAX_DEPTH} levels"
                    )
                starts.append((event.anchor, nodes))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, before = starts.pop()
                if anchor:
                    sizes[anchor] = nodes - before + 1
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                nodes += sizes.get(event.anchor, 1)
            if nodes > MAX_NODES:
                return _shape(
                    source, document, event, f"expands to more than {MAX_NODES} YAML nodes"
                )
    except yaml.YAMLError:
        return None
    return None


def _shape(source: str, document: int, event: yaml.Event, what: str) -> Problem:
    mark = event.start_mark
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return Problem(source, max(document, 1), "", f"the manifest {what}{where}; refused")


def parse(text: str, *, source: str = "") -> tuple[list[Document], list[Problem]]:
    """The objects of one file's text and the problems of its documents (all of them)."""
    documents: list[Document] = []
    problems: list[Problem] = []
    too_large = _too_large(source, len(text.encode()))
    if too_large is not None:
        return [], [too_large]
    shape = _shape_problem(text, source=source)
    if shape is not None:
        return [], [shape]
    index = 0
    try:
        for data in yaml.load_all(text, Loader=_Loader):
            index += 1
            if data is None:
                continue
            document, found = _document(data, source=source, index=index)
            problems.extend(found)
            if document is not None:
                documents.append(document)
    except yaml.YAMLError as exc:
        problems.append(Problem(source, index + 1, "", _yaml_message(exc)))
    if index == 0 and not problems:
        problems.append(Problem(source, 0, "", "no objects found (the manifest is empty)"))
    elif not documents and not problems:
        problems.append(Problem(source, 0, "", "no objects found (every document is empty)"))
    return documents, problems


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
        return f"invalid YAML: {what}"
    return f"invalid YAML: {exc}"


def resolve_kind(data: Mapping[str, Any]) -> tuple[kinds.Kind | None, list[tuple[str, str]]]:
    """The Kind a mapping declares through apiVersion and kind, or the problems with them."""
    api_version, kind = data.get("apiVersion"), data.get("kind")
    errors = []
    for field, value in (("apiVersion", api_version), ("kind", kind)):
        if value is None or value == "":
            errors.append((field, "Required value"))
        elif not isinstance(value, str):
            errors.append((field, f"must be a string, got {describe(value)}"))
    if errors:
        return None, errors
    found = SUPPORTED.get((api_version, kind))
    if found is not None:
        return found, []
    field = "apiVersion" if any(k == kind for _, k in SUPPORTED) else "kind"
    return None, [
        (
            field,
            f'no matches for kind "{kind}" in version "{api_version}" '
            f"(supported: {_SUPPORTED_TEXT})",
        )
    ]


def _document(data: Any, *, source: str, index: int) -> tuple[Document | None, list[Problem]]:
    def problems(errors: list[tuple[str, str]]) -> list[Problem]:
        return [Problem(source, index, field, message) for field, message in errors]

    if not isinstance(data, Mapping):
        return None, problems(
            [("", f"a manifest must be a mapping with apiVersion and kind, got {describe(data)}")]
        )
    kind, errors = resolve_kind(data)
    if kind is None:
        return None, problems(errors)
    message, errors = to_message(data, kind.info.message)
    if errors:
        return None, problems(errors)
    if kind is not kinds.Kind.NODE and "status" in message.DESCRIPTOR.fields_by_name:
        message.ClearField("status")  # the control plane owns status, as Kubernetes' API does
    defaults.set_defaults(message)
    errors = validation.check(message)
    if errors:
        return None, problems(errors)
    return Document(source, index, kind, message), []

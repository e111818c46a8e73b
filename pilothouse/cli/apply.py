"""`pilothouse apply -f`: create or update objects from manifests, as kubectl apply does.

Invariants: every document of every source is read and validated locally before anything is
sent; if any one is invalid, nothing is sent and every problem is printed with its file,
document and field path. With several documents the control plane first checks them all with a
dry run, so a document it refuses stops the whole batch before any write. Each object prints
one line, `deployment.apps/web created|configured|unchanged`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pilothouse import manifests
from pilothouse.cli import output, resources
from pilothouse.cli.context import Context
from pilothouse.client import Applied, ClientError, ErrorCode
from pilothouse.kinds import DEFAULT_NAMESPACE, Kind


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="create or update objects from manifests",
        description="Create or update objects from YAML/JSON manifests (files, dirs or - ).",
    )
    add_file_flags(parser, required=True)
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="server",
        default="none",
        choices=["none", "client", "server"],
        help="validate and show the result without writing (server: checked by the server)",
    )
    parser.add_argument("-n", "--namespace", default=None)


def add_file_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=required,
        default=[] if not required else None,
        metavar="FILE|DIR|-",
        help="manifest file, directory of manifests, or - for stdin (repeatable)",
    )


def load(sources: Sequence[str], *, namespace: str | None) -> list[manifests.Document]:
    """The documents of `sources`, validated, placed in `namespace` when one is given."""
    documents = manifests.load(sources)
    for doc in documents:
        meta = doc.message.metadata  # type: ignore[attr-defined]
        if not doc.kind.info.namespaced or namespace is None:
            continue
        # The manifest loader fills in "default" when a manifest names no namespace.
        if meta.namespace in ("", DEFAULT_NAMESPACE):
            meta.namespace = namespace
        elif meta.namespace != namespace:
            raise resources.UsageError(
                f'the namespace from the provided object "{meta.namespace}" does not match the '
                f'namespace "{namespace}". You must pass --namespace={meta.namespace} to perform '
                "this operation."
            )
    return documents


async def run(args: argparse.Namespace, ctx: Context) -> int:
    documents = load(args.filename, namespace=args.namespace)
    if not documents:
        raise resources.UsageError("no objects passed to apply")
    dry_run = args.dry_run != "none"
    suffix = {"none": "", "client": " (dry run)", "server": " (server dry run)"}[args.dry_run]
    failed = False
    async with ctx.connect() as client:
        # Namespaces first: the objects that go into them are refused before they exist.
        documents.sort(key=lambda doc: doc.kind is not Kind.NAMESPACE)
        made_here = {d.message.metadata.name for d in documents if d.kind is Kind.NAMESPACE}  # type: ignore[attr-defined]
        if len(documents) > 1 and not dry_run:
            for doc in documents:
                try:
                    await client.apply(doc.message, dry_run=True)
                except ClientError as exc:
                    if exc.code in (ErrorCode.UNREACHABLE, ErrorCode.UNAVAILABLE):
                        raise
                    if _only_missing_namespace(exc, made_here):
                        continue  # this apply makes it, before the objects that go into it
                    ctx.error(_refused(doc, exc))
                    failed = True
            if failed:
                ctx.error("nothing was applied")
                return 1
        for doc in documents:
            ref = output.reference(doc.kind, doc.message.metadata.name)  # type: ignore[attr-defined]
            try:
                applied: Applied = await client.apply(doc.message, dry_run=dry_run)
            except ClientError as exc:
                if exc.code is ErrorCode.UNREACHABLE:
                    raise
                ctx.error(_refused(doc, exc))
                failed = True
                continue
            ctx.print(f"{ref} {applied.result.value}{suffix}")
    return 1 if failed else 0


def _only_missing_namespace(exc: ClientError, namespaces: set[str]) -> bool:
    """Was the object refused only because its namespace does not exist yet, and is that
    namespace one this apply creates?"""
    wanted = {f'namespaces "{name}" not found' for name in namespaces}
    problems = exc.field_errors
    return bool(problems) and all(
        p.field == "metadata.namespace" and p.message in wanted for p in problems
    )


def _refused(doc: manifests.Document, exc: ClientError) -> str:
    ref = output.reference(doc.kind, doc.message.metadata.name)  # type: ignore[attr-defined]
    where = f"{doc.source}: document {doc.index}"
    if exc.field_errors:
        return "\n".join(
            f"{where}: {p.field + ': ' if p.field else ''}{p.message}" for p in exc.field_errors
        )
    return f"{where}: {ref}: {exc.message}"

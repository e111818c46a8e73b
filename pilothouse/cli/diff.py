"""`pilothouse diff -f FILE|DIR|-`: what `apply -f` would change, as a unified diff.

The control plane computes the result with a server-side dry run (nothing is written), and the
diff compares it with the live object (`diff`).

Invariant (kubectl's exit codes, which scripts rely on): 0 when applying would change nothing,
1 when there are differences (printed on stdout), 2 on any error (one `error:` line per
problem on stderr, nothing on stdout) — an error never looks like "no differences".
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import traceback
from collections.abc import Sequence

import yaml
from google.protobuf.message import Message

from pilothouse.cli import apply
from pilothouse.cli.context import Context
from pilothouse.cli.errors import describe_error
from pilothouse.cli.resources import UsageError
from pilothouse.cli.shape import to_k8s
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import of_message

EXIT_SAME = 0
EXIT_DIFFERENT = 1
EXIT_ERROR = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="show what apply would change (exit 1 when something would)",
        description="Diff the live objects against what `apply -f` would make of the manifests "
        "(server-side dry run). Exit 0: no differences; 1: differences; 2: an error.",
    )
    apply.add_file_flags(parser, required=True)
    parser.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    try:
        documents = apply.load(args.filename, namespace=args.namespace)
        if not documents:
            raise UsageError("no objects passed to diff")
        async with ctx.connect() as client:
            text = await diff(client, [doc.message for doc in documents])
    except Exception as exc:  # an error must not read as "differences" (exit 1)
        if ctx.debug:
            traceback.print_exc(file=ctx.err)
        ctx.error(describe_error(exc))
        return EXIT_ERROR
    if not text:
        return EXIT_SAME
    ctx.out.write(text)
    ctx.out.flush()
    return EXIT_DIFFERENT


VERBS = {"diff": run}


def _yaml(obj: Message | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(to_k8s(obj), sort_keys=False).splitlines(keepends=True)


async def diff(client: Client, objects: Sequence[Message]) -> str:
    """Unified diff of each object as stored against what Apply would make of it (server-side
    dry run); empty when applying would change nothing.

    Both sides are one version of the object: the dry run is pinned to the resourceVersion
    read, and a controller's write in between (status, say) makes it read both again, so such
    a write never shows as a difference. Annotations the controllers own (the revision
    number) are kept by Apply itself, so a manifest without them shows no difference."""
    chunks = []
    for obj in objects:
        kind = of_message(obj)
        live, merged = await _live_and_merged(client, obj)
        label = f"{kind.info.plural}/{obj.metadata.name}"
        chunks.extend(
            difflib.unified_diff(
                _yaml(live), _yaml(merged), fromfile=f"live/{label}", tofile=f"merged/{label}"
            )
        )
    return "".join(chunks)


async def _live_and_merged(
    client: Client, obj: Message, *, attempts: int = 10
) -> tuple[Message | None, Message]:
    meta = obj.metadata
    kind = of_message(obj)
    for attempt in range(attempts):
        live: Message | None
        try:
            live = await client.get(kind, meta.name, namespace=meta.namespace)
        except ClientError as error:
            if error.code is not ErrorCode.NOT_FOUND:
                raise
            live = None  # Apply would create it
        wanted = type(obj)()
        wanted.CopyFrom(obj)
        if live is not None:
            wanted.metadata.resource_version = live.metadata.resource_version  # type: ignore[attr-defined]
        try:
            return live, (await client.apply(wanted, dry_run=True)).object
        except ClientError as error:
            # Changed (or created, or deleted) since it was read: read it again.
            retry = error.code in (
                ErrorCode.CONFLICT,
                ErrorCode.NOT_FOUND,
                ErrorCode.ALREADY_EXISTS,
            )
            if not retry or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")

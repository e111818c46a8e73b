"""`pilothouse delete`: remove objects named on the command line, by selector, or by manifest.

Invariants: each deleted object prints `deployment.apps "web" deleted`; an object that is
already gone is an error (exit 1) unless `--ignore-not-found`, and never stops the others
from being deleted.
"""

from __future__ import annotations

import argparse

from pilothouse.cli import apply, output, resources
from pilothouse.cli.context import Context
from pilothouse.cli.get import add_scope_flags
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import Kind


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "delete",
        help="delete objects by name, selector or manifest",
        description="Delete objects: `delete KIND NAME...`, `delete KIND/NAME`, `delete -f FILE`.",
    )
    parser.add_argument(
        "resources", nargs="*", metavar="RESOURCE", help="KIND [NAME...] or KIND/NAME..."
    )
    apply.add_file_flags(parser, required=False)
    add_scope_flags(parser)
    parser.add_argument("-l", "--selector", default="", help="delete what this selects")
    parser.add_argument("--all", action="store_true", help="delete every object of the kind")
    parser.add_argument("--ignore-not-found", action="store_true")
    parser.add_argument(
        "--cascade",
        default="background",
        choices=("background", "foreground", "orphan", "true", "false"),
        help="what happens to the objects it owns: deleted after it (background), before it "
        "(foreground), or kept, no longer owned (orphan); true/false are the old names of "
        "background/orphan",
    )


async def run(args: argparse.Namespace, ctx: Context) -> int:
    plan = await _plan(args, ctx) if not args.filename else None
    failed = False
    async with ctx.connect() as client:
        if plan is None:
            documents = apply.load(args.filename, namespace=args.namespace)
            if args.resources:
                raise resources.UsageError("give either -f FILE or KIND NAME, not both")
            targets = [
                (doc.kind, doc.message.metadata.name, doc.message.metadata.namespace)  # type: ignore[attr-defined]
                for doc in documents
            ]
        else:
            targets = await _expand(client, plan, args=args, ctx=ctx)
        for kind, name, namespace in targets:
            deleted = await _delete(
                client,
                ctx,
                target=(kind, name, namespace),
                ignore_missing=args.ignore_not_found,
                propagation=_PROPAGATION[args.cascade],
            )
            failed |= not deleted
    return 1 if failed else 0


async def _plan(args: argparse.Namespace, ctx: Context) -> list[resources.Target]:
    targets = resources.parse_targets(args.resources, verb="delete")
    for target in targets:
        if not target.names and not (args.all or args.selector):
            raise resources.UsageError(
                f"resource name may not be empty: give `delete {target.kind.info.plural} NAME`, "
                "-l SELECTOR or --all"
            )
    return targets


async def _expand(
    client: Client, targets: list[resources.Target], *, args: argparse.Namespace, ctx: Context
) -> list[tuple[Kind, str, str]]:
    namespace = "" if args.all_namespaces else ctx.namespace(args.namespace)
    wanted = resources.selector(args.selector)
    expanded: list[tuple[Kind, str, str]] = []
    for target in targets:
        if target.names:
            expanded.extend((target.kind, name, namespace) for name in target.names)
            continue
        listed = await client.list(target.kind, namespace=namespace, label_selector=args.selector)
        for item in listed.items:
            if resources.matches(item, wanted):
                meta = item.metadata  # type: ignore[attr-defined]
                expanded.append((target.kind, meta.name, meta.namespace))
        if not listed.items:
            ctx.warn("No resources found")
    return expanded


_PROPAGATION = {
    "background": "Background",
    "true": "Background",
    "foreground": "Foreground",
    "orphan": "Orphan",
    "false": "Orphan",
}


async def _delete(
    client: Client,
    ctx: Context,
    *,
    target: tuple[Kind, str, str],
    ignore_missing: bool,
    propagation: str = "Background",
) -> bool:
    kind, name, namespace = target
    try:
        await client.delete(kind, name, namespace=namespace, propagation=propagation)
    except ClientError as exc:
        if exc.code is ErrorCode.UNREACHABLE:
            raise
        if exc.code is ErrorCode.NOT_FOUND and ignore_missing:
            return True
        ctx.error(exc.message)
        return False
    ctx.print(f"{output.quoted(kind, name)} deleted")
    return True

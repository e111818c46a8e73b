"""`pilothouse get`: list or read objects as a table or in the Kubernetes shape, and watch them.

Invariants: a table has kubectl's columns for the kind (`pilothouse.cli.tables`); `-o json|yaml`
prints the Kubernetes shape; `-w` prints the current state first, then one row (or object) per
change, starting exactly after the listed state so no change is missed or shown twice. A name
that does not exist is reported on stderr and makes the exit code 1, while the others print.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from google.protobuf.message import Message

from pilothouse.cli import controlplanes, output, resources, tables, watching
from pilothouse.cli.context import Context
from pilothouse.cli.output import Format
from pilothouse.client import ChangeType, Client, ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "get",
        help="show one or many objects",
        description="Show objects as a table, or in the Kubernetes shape with -o json|yaml.",
    )
    parser.add_argument(
        "resources", nargs="+", metavar="RESOURCE", help="KIND [NAME...] or KIND/NAME..."
    )
    add_scope_flags(parser)
    parser.add_argument("-l", "--selector", default="", help="label selector, e.g. app=web")
    parser.add_argument("-o", "--output", default="", choices=output.FORMAT_CHOICES)
    parser.add_argument("-w", "--watch", action="store_true", help="then print each change")
    parser.add_argument("--watch-only", action="store_true", help="print changes only")


def add_scope_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace, not one"
    )


async def run(args: argparse.Namespace, ctx: Context) -> int:
    if controlplanes.wanted(args.resources):  # members, not objects of a kind
        return await controlplanes.get(args, ctx)
    targets = resources.parse_targets(args.resources, verb="get")
    wanted = resources.selector(args.selector)
    fmt = Format(args.output)
    namespace = "" if args.all_namespaces else ctx.namespace(args.namespace)
    async with ctx.connect() as client:
        if args.watch or args.watch_only:
            if len(targets) != 1:
                raise resources.UsageError("you may only watch one kind of object at a time")
            return await _watch(client, ctx, targets[0], args=args, namespace=namespace)
        failed = False
        printed = False
        for target in targets:
            items, missing = await _fetch(
                client, target, namespace=namespace, selector=args.selector
            )
            items = [item for item in items if resources.matches(item, wanted)]
            for error in missing:
                ctx.warn(f"error: {error.message}")
                failed = True
            if not items:
                if target.names:
                    continue
                if fmt in (Format.JSON, Format.YAML):  # kubectl prints an empty List
                    ctx.print(output.render([], fmt, single=False))
                    printed = True
                else:
                    ctx.warn(_nothing_found(namespace, target.kind))
                continue
            if printed and fmt in (Format.TABLE, Format.WIDE):
                ctx.print()
            pods = await _pods_for(client, target.kind)
            ctx.print(
                _render(
                    target.kind,
                    items,
                    ctx=ctx,
                    fmt=fmt,
                    all_namespaces=args.all_namespaces,
                    single=len(target.names) == 1 and len(targets) == 1,
                    pods=pods,
                )
            )
            printed = True
        return 1 if failed else 0


async def _fetch(
    client: Client, target: resources.Target, *, namespace: str, selector: str
) -> tuple[list[Message], list[ClientError]]:
    if not target.names:
        listed = await client.list(target.kind, namespace=namespace, label_selector=selector)
        return listed.items, []
    items: list[Message] = []
    missing: list[ClientError] = []
    for name in target.names:
        try:
            items.append(await client.get(target.kind, name, namespace=namespace))
        except ClientError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
            missing.append(exc)
    return items, missing


async def _pods_for(client: Client, kind: Kind) -> list[o.Pod] | None:
    """Every pod, when the table needs them (node allocation); None if they cannot be read."""
    if kind is not Kind.NODE:
        return None
    try:
        listed = await client.list(Kind.POD)
    except ClientError:
        return None
    return [p for p in listed.items if isinstance(p, o.Pod)]


def _render(
    kind: Kind,
    items: Sequence[Message],
    *,
    ctx: Context,
    fmt: Format,
    all_namespaces: bool,
    single: bool,
    pods: list[o.Pod] | None = None,
) -> str:
    if fmt in (Format.TABLE, Format.WIDE):
        table = tables.table(
            kind,
            items,
            now=ctx.now(),
            wide=fmt is Format.WIDE,
            with_namespace=all_namespaces,
            pods=pods,
        )
        return tables.render(table)
    return output.render(items, fmt, single=single)


def _nothing_found(namespace: str, kind: Kind) -> str:
    if namespace and kind.info.namespaced:
        return f"No resources found in {namespace} namespace."
    return "No resources found"


async def _watch(
    client: Client,
    ctx: Context,
    target: resources.Target,
    *,
    args: argparse.Namespace,
    namespace: str,
) -> int:
    kind = target.kind
    fmt = Format(args.output)
    wanted = resources.selector(args.selector)
    names = set(target.names)

    def shown(message: Message) -> bool:
        name = message.metadata.name  # type: ignore[attr-defined]
        return (not names or name in names) and resources.matches(message, wanted)

    listed = await watching.retrying(
        lambda: client.list(kind, namespace=namespace, label_selector=args.selector),
        on_retry=ctx.warn,
    )
    initial = [item for item in listed.items if shown(item)]
    layout = tables.Layout()
    header_printed = False

    def emit(items: Sequence[Message]) -> None:
        nonlocal header_printed
        if fmt in (Format.TABLE, Format.WIDE):
            table = tables.table(
                kind,
                items,
                now=ctx.now(),
                wide=fmt is Format.WIDE,
                with_namespace=args.all_namespaces,
            )
            rows = list(table.rows)
            if not header_printed:
                rows.insert(0, table.headers)
                header_printed = True
            layout.fit(rows)
            for row in rows:
                ctx.print(layout.line(row))
        elif fmt is Format.NAME:
            for item in items:
                ctx.print(output.name_of(item))
        else:
            for item in items:
                text = output.render([item], fmt, single=True)
                ctx.print(("---\n" + text) if fmt is Format.YAML else text)

    if initial and not args.watch_only:
        emit(initial)
    # Without a list revision, the watch replays the current state: skip what was just shown.
    seen = {_version(item) for item in initial} if not listed.resource_version else set()
    async for change in watching.follow(
        client,
        kind,
        namespace=namespace,
        label_selector=args.selector,
        resource_version=listed.resource_version,
        on_retry=ctx.warn,
    ):
        if change.type is ChangeType.BOOKMARK or change.object is None:
            continue
        if not shown(change.object):
            continue
        if change.type is ChangeType.ADDED and _version(change.object) in seen:
            seen.discard(_version(change.object))
            continue
        emit([change.object])
    return 0


def _version(message: Message) -> tuple[str, str, str]:
    meta = message.metadata  # type: ignore[attr-defined]
    return (meta.namespace, meta.name, meta.resource_version)

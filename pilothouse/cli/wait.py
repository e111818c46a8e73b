"""`pilothouse wait`: block until objects reach a condition, as kubectl wait does.

`wait --for=condition=complete job/pi [--timeout=60s]` waits until each named object has a
condition of that type (any case) with status True (or the status after a second `=`:
`--for=condition=Ready=False`); `--for=delete` waits until each is gone. Each object prints
`job.batch/pi condition met` (or `deleted`) when it gets there.

Invariants: it watches (no polling), starting from the state it read, so no change is missed;
an object that does not exist fails at once (unless waiting for its deletion); at the timeout
it says `timed out waiting for the condition on jobs/pi` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import re

from google.protobuf.message import Message

from pilothouse.cli import output, resources
from pilothouse.cli.context import Context
from pilothouse.client import ChangeType, Client, ClientError, ErrorCode
from pilothouse.kinds import Kind

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "wait",
        help="wait until objects reach a condition (or are deleted)",
        description="Wait: `wait --for=condition=complete job/pi --timeout=60s`, "
        "`wait --for=delete pod/web-0`.",
    )
    parser.add_argument("resources", nargs="+", metavar="RESOURCE", help="KIND/NAME...")
    parser.add_argument(
        "--for", dest="wanted", required=True, help="condition=TYPE[=STATUS] or delete"
    )
    parser.add_argument("--timeout", default="30s", help="how long to wait (30s, 2m, 1h)")
    parser.add_argument("-n", "--namespace", default=None)


def timeout_seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise resources.UsageError(f'--timeout "{text}": give a duration such as 30s or 2m')
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_for(text: str) -> tuple[str, str] | None:
    """("complete", "True") for condition=complete, None for delete."""
    if text == "delete":
        return None
    kind, _, rest = text.partition("=")
    if kind != "condition" or not rest:
        raise resources.UsageError(
            f'--for "{text}": give condition=TYPE, condition=TYPE=STATUS or delete'
        )
    type_, _, status = rest.partition("=")
    return type_.lower(), status or "True"


def met(obj: Message, wanted: tuple[str, str]) -> bool:
    type_, status = wanted
    conditions = getattr(getattr(obj, "status", None), "conditions", ())
    return any(c.type.lower() == type_ and c.status.lower() == status.lower() for c in conditions)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    wanted = parse_for(args.wanted)
    limit = timeout_seconds(args.timeout)
    targets = resources.parse_targets(args.resources, verb="wait")
    namespace = ctx.namespace(args.namespace)
    failed = False
    async with ctx.connect() as client:
        for target in targets:
            if not target.names:
                raise resources.UsageError("wait needs KIND/NAME for each object")
            for name in target.names:
                ok = await _wait_one(
                    client, ctx, target.kind, name, namespace=namespace, wanted=wanted, limit=limit
                )
                failed |= not ok
    return 1 if failed else 0


async def _wait_one(
    client: Client,
    ctx: Context,
    kind: Kind,
    name: str,
    *,
    namespace: str,
    wanted: tuple[str, str] | None,
    limit: float,
) -> bool:
    done_text = "deleted" if wanted is None else "condition met"

    async def watch() -> bool:
        field = f"metadata.name={name}"
        seen = False
        async for change in client.watch(kind, namespace=namespace, field_selector=field):
            obj = change.object
            if obj is None or obj.metadata.name != name:  # type: ignore[attr-defined]
                continue
            seen = True
            if wanted is None and change.type is ChangeType.DELETED:
                return True
            if wanted is not None and change.type is not ChangeType.DELETED and met(obj, wanted):
                return True
        return seen

    try:
        await client.get(kind, name, namespace=namespace)
    except ClientError as exc:
        if exc.code is ErrorCode.NOT_FOUND and wanted is None:
            ctx.print(f"{output.reference(kind, name)} {done_text}")
            return True
        if exc.code is ErrorCode.NOT_FOUND:
            ctx.error(exc.message)
            return False
        raise
    try:
        async with asyncio.timeout(limit):
            reached = await watch()
    except TimeoutError:
        ctx.error(f"timed out waiting for the condition on {kind.info.plural}/{name}")
        return False
    if not reached:
        ctx.error(f"the watch of {kind.info.plural}/{name} ended before the condition")
        return False
    ctx.print(f"{output.reference(kind, name)} {done_text}")
    return True

"""`pilothouse logs POD`: a container's output, streamed from its node through the control plane.

Forms, as kubectl's: `logs POD [-c C]`, `logs deployment/NAME` (or replicaset/, statefulset/,
svc/: one of its pods, a running one and the oldest first, said on stderr when there were
several), `logs -l SELECTOR` (every matching pod at once, each line prefixed
`[pod/NAME/CONTAINER]`). Flags: `-f` (follow, across the log's rotation), `--tail N`,
`-p/--previous` (the container's previous instance), `--since 5m` / `--since-time RFC3339`
(only lines written since then), `--timestamps` (each line with the time the node wrote it),
`--prefix`.

Invariants: without a prefix, bytes are written as they arrive, unchanged, and flushed per
chunk, so `-f` shows lines as the container writes them; with one, whole lines are prefixed
(a partial line waits for its end). Several pods' streams interleave by line, never inside one.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.cli import podtarget, resources
from pilothouse.cli.context import Context
from pilothouse.client import Client
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2

MAX_LOG_REQUESTS = 5  # kubectl's --max-log-requests default
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print the logs of a pod's container",
        description="Print a container's logs: `logs POD [-c CONTAINER] [-f] [--tail N]`, "
        "`logs deployment/NAME`, `logs -l app=web --prefix`.",
    )
    parser.add_argument(
        "pod", nargs="?", default="", metavar="POD | pod/NAME | deployment/NAME | replicaset/NAME"
    )
    parser.add_argument("-c", "--container", default="")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("--tail", type=int, default=-1, help="last N lines (-1: all)")
    parser.add_argument("-p", "--previous", action="store_true", help="the previous instance")
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("-l", "--selector", default="", help="every pod with these labels")
    parser.add_argument("--since", default="", help="only lines newer than this (5s, 2m, 3h)")
    parser.add_argument("--since-time", default="", help="only lines since this RFC 3339 time")
    parser.add_argument("--timestamps", action="store_true", help="each line with its time")
    parser.add_argument("--prefix", action="store_true", help="each line with its pod/container")
    parser.add_argument("--all-containers", action="store_true", help="every container")
    parser.add_argument(
        "--max-log-requests", type=int, default=MAX_LOG_REQUESTS, help="pods followed at most"
    )


def since_of(args: argparse.Namespace, now: datetime) -> datetime | None:
    if args.since and args.since_time:
        raise resources.UsageError("at most one of --since and --since-time may be given")
    if args.since:
        match = _DURATION.match(args.since)
        if not match or not any(match.groups()):
            raise resources.UsageError(f"invalid --since {args.since!r}: use 10s, 5m, 2h or 1h30m")
        h, m, s = (int(g or 0) for g in match.groups())
        return now - timedelta(hours=h, minutes=m, seconds=s)
    if args.since_time:
        try:
            stamp = datetime.fromisoformat(args.since_time.replace("Z", "+00:00"))
        except ValueError:
            raise resources.UsageError(f"invalid --since-time {args.since_time!r}") from None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


async def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.pod and not args.selector:
        raise resources.UsageError("logs needs a pod (POD, KIND/NAME) or a selector (-l)")
    if args.pod and args.selector:
        raise resources.UsageError("give either a pod or a selector (-l), not both")
    since = since_of(args, datetime.now(UTC))
    namespace = ctx.namespace(args.namespace)
    sink = _Sink(ctx)
    async with ctx.connect() as client:
        if args.selector:
            listed = await client.list(
                Kind.POD, namespace=namespace, label_selector=str(resources.selector(args.selector))
            )
            pods = sorted(listed.items, key=lambda p: p.metadata.name)
            if not pods:
                ctx.warn(f"No resources found in {namespace} namespace.")
                return 0
            if args.follow and len(pods) > args.max_log_requests:
                raise resources.UsageError(
                    f"you are attempting to follow {len(pods)} log streams, but maximum allowed "
                    f"concurrency is {args.max_log_requests}, use --max-log-requests to increase "
                    "the limit"
                )
            prefix = True
        else:
            kind, name = podtarget.parse(args.pod, verb="logs")
            pod, _ = await podtarget.resolve(client, kind, name, namespace=namespace, err=ctx.err)
            pods, prefix = [pod], args.prefix
        streams = [
            (pod, container)
            for pod in pods
            for container in _containers(
                pod, args.container, every=args.all_containers or bool(args.selector)
            )
        ]
        await asyncio.gather(
            *(
                _stream(client, pod, container, args=args, since=since, sink=sink, prefix=prefix)
                for pod, container in streams
            )
        )
    return 0


def _containers(pod: objects_pb2.Pod, named: str, *, every: bool) -> list[str]:
    if named:
        return [named]
    names = [c.name for c in pod.spec.containers]
    if every or len(names) == 1:
        return names
    return [""]  # the agent says which containers there are (kubectl's message)


async def _stream(
    client: Client,
    pod: objects_pb2.Pod,
    container: str,
    *,
    args: argparse.Namespace,
    since: datetime | None,
    sink: _Sink,
    prefix: bool,
) -> None:
    label = f"[pod/{pod.metadata.name}/{container or pod.spec.containers[0].name}] "
    carry = b""
    async for data in client.logs(
        pod.metadata.name,
        namespace=pod.metadata.namespace,
        container=container,
        tail_lines=args.tail,
        follow=args.follow,
        previous=args.previous,
        since=since,
        timestamps=args.timestamps,
    ):
        if not prefix:
            sink.write(data)
            continue
        carry += data
        *complete, carry = carry.split(b"\n")
        if complete:
            sink.write(b"".join(label.encode() + line + b"\n" for line in complete))
    if prefix and carry:
        sink.write(label.encode() + carry + b"\n")


class _Sink:
    def __init__(self, ctx: Context) -> None:
        self._buffer: Any = getattr(ctx.out, "buffer", None) if ctx.out is sys.stdout else None
        self._out = ctx.out

    def write(self, data: bytes) -> None:
        if self._buffer is not None:
            self._buffer.write(data)
            self._buffer.flush()
        else:
            self._out.write(data.decode("utf-8", errors="replace"))
            self._out.flush()

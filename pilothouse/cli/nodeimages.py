"""`pilothouse images [--node N]`: the images on the nodes, their sizes and the pods using them.

One row per image and name (as `crictl images` prints tags), nodes in name order, each node's
images largest first: NODE, IMAGE (the normalized reference, `<none>` for an image known by
digest only), IMAGE ID (the manifest digest's first 12 hex digits, the image id pod statuses
show in full), SIZE (bytes on the node: blobs and unpacked layers, in powers of 1000), LAST
USED (since a container last pulled, started or stopped with it) and PODS (namespace/name).

Invariant: the listing comes from the agents themselves, through the control plane (as logs
do): a node whose agent cannot answer is named on stderr with the reason, the others are
still listed, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
from datetime import UTC

from pilothouse.cli import tables
from pilothouse.cli.context import Context

HELP = "list the images on nodes, their sizes and the pods using them"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "images",
        help=HELP,
        description="List the images each node holds (through its agent): names, image ids, "
        "sizes, last use and the pods using them.",
    )
    parser.add_argument("--node", default="", metavar="NODE", help="only this node's images")


def size_text(size: int) -> str:
    """Bytes as crictl prints image sizes: 812B, 3.4kB, 31.2MB, 1.05GB (powers of 1000)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.3g}{unit}"
    return f"{size}B"


async def run(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        listed = await client.node_images(args.node)
    now = ctx.now().astimezone(UTC)
    rows: list[tuple[str, ...]] = []
    failed = 0
    for node in listed.nodes:
        if node.error:
            ctx.warn(f'warning: node "{node.node}": cannot list its images: {node.error}')
            failed += 1
            continue
        for image in sorted(node.images, key=lambda i: (-i.size_bytes, i.digest)):
            cells = (
                image.digest.removeprefix("sha256:")[:12],
                size_text(image.size_bytes),
                tables.age(image.last_used, now),
                ",".join(image.pods) or "<none>",
            )
            rows += [(node.node, name, *cells) for name in (image.names or ["<none>"])]
    if rows:
        headers = ("NODE", "IMAGE", "IMAGE ID", "SIZE", "LAST USED", "PODS")
        ctx.print(tables.render(tables.Table(headers, tuple(rows))))
    elif not failed:
        ctx.warn("No images found." if not args.node else f'No images found on "{args.node}".')
    return 1 if failed else 0


VERBS = {"images": run}

"""`pilothouse set image deployment/NAME CONTAINER=IMAGE [...]`: change a Deployment's images.

Invariants: every `CONTAINER=IMAGE` is checked before anything is sent, and all of them change
in one write (one new revision), pinned to the resourceVersion read, so a concurrent edit makes
the verb fail instead of being overwritten. `*` as the container name means every container.
"""

from __future__ import annotations

import argparse

from pilothouse.cli import rollout
from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError
from pilothouse.cli.rollout.verbs import deployment_name


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "set",
        help="change fields of objects (set image)",
        description="Change a field of an object: `set image deployment/web httpd=busybox:1.36`.",
    )
    verbs = parser.add_subparsers(dest="set_verb", metavar="image", required=True)
    image = verbs.add_parser(
        "image",
        help="set the image of containers of a deployment",
        description="Set container images: `set image deployment/NAME CONTAINER=IMAGE [...]` "
        "(CONTAINER `*` means every container).",
    )
    image.add_argument(
        "words",
        nargs="+",
        metavar="WORD",
        help="deployment/NAME (or deployment NAME), then CONTAINER=IMAGE pairs",
    )
    image.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    pairs = [word for word in args.words if "=" in word]
    target = [word for word in args.words if "=" not in word]
    name = deployment_name(target, verb="set image")
    if not pairs:
        raise UsageError("set image needs at least one CONTAINER=IMAGE")
    try:
        images = rollout.parse_images(pairs)
        async with ctx.connect() as client:
            message = await rollout.set_image(
                client, name, images, namespace=ctx.namespace(args.namespace)
            )
    except rollout.RolloutError as exc:
        ctx.error(str(exc))
        return 1
    ctx.print(message)
    return 0


VERBS = {"set": run}

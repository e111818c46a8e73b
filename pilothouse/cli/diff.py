"""`pilothouse diff -f FILE|DIR|-`: what `apply -f` would change, as a unified diff.

The control plane computes the result with a server-side dry run (nothing is written), and the
diff compares it with the live object (`pilothouse.rollout.diff`).

Invariant (kubectl's exit codes, which scripts rely on): 0 when applying would change nothing,
1 when there are differences (printed on stdout), 2 on any error (one `error:` line per
problem on stderr, nothing on stdout) — an error never looks like "no differences".
"""

from __future__ import annotations

import argparse
import traceback

from pilothouse import rollout
from pilothouse.cli import apply
from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError

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
            text = await rollout.diff(client, [doc.message for doc in documents])
    except Exception as exc:  # an error must not read as "differences" (exit 1)
        # main's wording for errors; imported here because main imports this module.
        from pilothouse.cli.main import describe_error

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

"""`pilothouse secrets rotate-key`: a new Secrets encryption key, and every Secret re-sealed.

Secrets are encrypted at rest in etcd (AES-256-GCM) with the primary key of the control
plane's key file (`<data-dir>/pki/secrets-encryption.json`). Rotating makes a new primary key,
saves it in that file first, then rewrites every Secret with it; the older keys stay in the
file (an etcd backup taken before still opens) and are listed as retired. The call needs the
admin's credentials, as every call does on a secure control plane.
"""

from __future__ import annotations

import argparse

from pilothouse.cli.context import Context


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "secrets",
        help="manage the encryption of Secrets at rest",
        description="`secrets rotate-key`: make a new Secrets encryption key the primary one "
        "and re-encrypt every Secret with it.",
    )
    verbs = parser.add_subparsers(dest="secrets_verb", metavar="rotate-key", required=True)
    verbs.add_parser(
        "rotate-key",
        help="new primary encryption key; re-encrypt every Secret",
        description="Make a new AES-256-GCM key primary (saved in the control plane's "
        "pki/secrets-encryption.json) and rewrite every Secret with it. Older keys stay in "
        "the file so that earlier etcd backups can still be read.",
    )


async def run(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        rotated = await client.rotate_secrets_key()
    ctx.print(
        f'secrets encryption key rotated: new key "{rotated.key_id}", '
        f"{rotated.secrets_rewritten} secret(s) re-encrypted"
    )
    if rotated.retired_key_ids:
        ctx.print("retired keys (kept for old backups): " + ", ".join(rotated.retired_key_ids))
    return 0


VERBS = {"secrets": run}

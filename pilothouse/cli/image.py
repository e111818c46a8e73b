"""`pilothouse image push|build-test`: push OCI image archives to registries; the test image.

Invariant: the image code (`pilothouse.oci`) is imported only when an image verb runs, so the
rest of the CLI starts fast and does not depend on it. `--insecure` allows plain http to the
registry of that one reference (loopback registries are always allowed plain http);
`--registries FILE` reads credentials (and mirrors) from a registries.yaml, e.g. the one `up`
writes for its registry, which takes no anonymous push.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "image",
        help="push image archives to a registry; build the busybox test image",
        description="Work with OCI image archives.",
    )
    verbs = parser.add_subparsers(dest="image_verb", metavar="ACTION", required=True)
    push = verbs.add_parser(
        "push",
        help="push an OCI-layout or docker-save archive to a registry",
        description="Push ARCHIVE (OCI layout or docker save tar) as REF, "
        "e.g. 127.0.0.1:5000/busybox:stable.",
    )
    push.add_argument("archive", type=Path, metavar="ARCHIVE")
    push.add_argument("reference", metavar="REF")
    push.add_argument("--insecure", action="store_true", help="allow plain http to this registry")
    push.add_argument(
        "--registries",
        type=Path,
        metavar="FILE",
        help="registries.yaml with the registry's credentials (`up` prints its own)",
    )
    build = verbs.add_parser(
        "build-test",
        help="build the offline busybox test image as an OCI archive",
        description="Write the busybox test image (from Debian's busybox-static) to OUT.tar.",
    )
    build.add_argument("out", type=Path, metavar="OUT.tar")
    build.add_argument("--tag", default="busybox:stable", help="image name (default %(default)s)")


async def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.image_verb == "push":
        return await _push(args, ctx)
    return _build_test(args, ctx)


async def _push(args: argparse.Namespace, ctx: Context) -> int:
    from pilothouse.oci import OCIError, reference, registries, registry

    if not args.archive.is_file():
        raise UsageError(f"archive {args.archive} does not exist")
    try:
        config = None
        data: dict[str, dict[str, dict[str, object]]] = {"configs": {}}
        if args.registries is not None:
            if not args.registries.is_file():
                raise UsageError(f"--registries {args.registries}: no such file")
            import yaml

            try:
                data = yaml.safe_load(args.registries.read_text()) or {}
            except yaml.YAMLError as exc:
                raise UsageError(f"--registries {args.registries}: not valid YAML: {exc}") from None
            data.setdefault("configs", {})
        if args.insecure:
            host = reference.parse(args.reference).registry
            data["configs"].setdefault(host, {})["insecure"] = True
        if args.registries is not None or args.insecure:
            config = registries.RegistriesConfig.from_dict(data)
        digest = await registry.push_archive(args.archive, args.reference, config=config)
    except OCIError as exc:
        raise UsageError(f"cannot push {args.archive} to {args.reference}: {exc}") from None
    ctx.print(f"{args.reference}: digest: {digest}")
    return 0


def _build_test(args: argparse.Namespace, ctx: Context) -> int:
    from pilothouse.oci import OCIError, testimage

    try:
        path = testimage.build_test_image(args.out, tag=args.tag)
    except OCIError as exc:
        raise UsageError(f"cannot build the test image: {exc}") from None
    ctx.print(str(path))
    return 0


VERBS = {"image": run}

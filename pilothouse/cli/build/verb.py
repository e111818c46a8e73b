"""`pilothouse build`: the command line of the builder (flags, progress, the final lines).

    pilothouse build -t NAME[:TAG] [-f Containerfile] [--build-arg K=V] [--target STAGE]
                     [--push] [--no-cache] [--pull] [--network host] [-o OUT] DIR
    pilothouse build --load ARCHIVE          put an image archive's images into the build store
    pilothouse build --prune [--cache-limit SIZE]   empty the layer cache (or shrink it to SIZE)

Progress (one line a step, a RUN step's output, "--> cached") goes to stderr; stdout gets one
line per name, `NAME: digest: sha256:…` (as `pilothouse image push` prints), so scripts can
read it. Invariant: the builder's modules are imported only when this verb runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pilothouse.cli.context import Context
from pilothouse.cli.usage import UsageError

DEFAULT_CACHE_LIMIT = "10Gi"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build an image from a Containerfile (layer cache, OCI output, --push)",
        description="Build an OCI image from a Containerfile in DIR (the build context). RUN "
        "steps run in runc with no network unless --network host. Images are kept in the "
        "build store (--root); layers are cached by their inputs, so a rebuild with no "
        "change does no work.",
    )
    parser.add_argument("context", nargs="?", type=Path, metavar="DIR", help="build context")
    parser.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]")
    parser.add_argument("-f", "--file", type=Path, metavar="FILE", help="the Containerfile")
    parser.add_argument(
        "--build-arg", action="append", default=[], metavar="K=V", help="set a build ARG"
    )
    parser.add_argument("--target", metavar="STAGE", help="build only up to this stage")
    parser.add_argument("--push", action="store_true", help="push each -t name when built")
    parser.add_argument("--no-cache", action="store_true", help="run every step again")
    parser.add_argument(
        "--pull", action="store_true", help="look base images up in their registry again"
    )
    parser.add_argument(
        "--network",
        choices=("none", "host"),
        default="none",
        help="network of RUN steps: none (only loopback, the default) or host",
    )
    parser.add_argument(
        "--registries", type=Path, metavar="FILE", help="registries.yaml (mirrors, credentials)"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow plain http to the registries of -t names"
    )
    parser.add_argument("--root", type=Path, metavar="DIR", help="the build store directory")
    parser.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="also write an OCI layout dir (or .tar)"
    )
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        type=Path,
        metavar="ARCHIVE",
        help="import the images of an OCI or docker-save archive into the build store",
    )
    parser.add_argument("--prune", action="store_true", help="empty the layer cache")
    parser.add_argument(
        "--cache-limit",
        default=DEFAULT_CACHE_LIMIT,
        metavar="SIZE",
        help="keep the build store under SIZE, least recently used first (default %(default)s)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the digest")


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"--build-arg {item!r}: want NAME=VALUE")
        if not eq:
            if key not in os.environ:
                continue  # Docker: a bare NAME takes the environment's value, if any
            value = os.environ[key]
        out[key] = value
    return out


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from pilothouse import quantity
    from pilothouse.cli.build import BuildError
    from pilothouse.cli.build.executor import Builder, BuildOptions
    from pilothouse.cli.build.runstep import RuncDriver
    from pilothouse.cli.build.store import BuildStore, default_root
    from pilothouse.oci import OCIError, reference

    try:
        limit = quantity.parse_memory(args.cache_limit)
    except ValueError as exc:
        raise UsageError(f"--cache-limit {args.cache_limit!r}: {exc}") from None
    if args.context is None and not (args.prune or args.load):
        raise UsageError("build needs a context directory DIR (or --load / --prune)")
    store = BuildStore(args.root or default_root())
    quiet = args.quiet

    def progress(text: str) -> None:
        if not quiet:
            ctx.warn(text)

    try:
        if args.load:
            from pilothouse.cli.build import pull
        for archive in args.load:
            with store.locked():
                for name, digest in pull.load(store, archive):
                    ctx.print(f"{name}: digest: {digest}")
        if args.prune:
            with store.locked():
                pruned = store.prune(limit=None if args.context is None else limit)
            ctx.print(
                f"pruned {pruned.cache_entries} cache entries, {pruned.blobs} blobs, "
                f"{pruned.layers} layer dirs; freed {quantity.human_memory(pruned.freed)}, "
                f"store now {quantity.human_memory(pruned.usage.total)}"
            )
        if args.context is None:
            return 0
        config = None
        if args.registries or args.insecure:
            from pilothouse.oci import registries
        if args.registries:
            config = registries.RegistriesConfig.load(args.registries)
        if args.insecure:
            hosts = {reference.parse(t).registry: {"insecure": True} for t in args.tag}
            data = {"configs": hosts}
            if args.registries:
                import yaml

                loaded = yaml.safe_load(args.registries.read_text()) or {}
                loaded.setdefault("configs", {}).update(hosts)
                data = loaded
            config = registries.RegistriesConfig.from_dict(data)
        for tag in args.tag:
            reference.parse(tag)
        if args.push and not args.tag:
            raise UsageError("--push needs a name to push: give -t NAME[:TAG]")
        driver = RuncDriver(
            run_dir=store.run_dir, runc_root=store.runc_root, output=lambda line: progress(line)
        )
        builder = Builder(store, driver=driver, progress=progress)
        result = await builder.build(
            BuildOptions(
                context=args.context,
                containerfile=args.file,
                tags=tuple(args.tag),
                build_args=_pairs(args.build_arg),
                target=args.target,
                no_cache=args.no_cache,
                pull=args.pull,
                host_network=args.network == "host",
                registries=config,
            )
        )
        ran = len(result.ran)
        progress(
            f"built {result.digest} in {result.seconds:.2f}s ({ran} step(s) run, "
            f"{sum(1 for s in result.steps if s.cached)} cached)"
        )
        if args.output or args.push:
            from pilothouse.cli.build import publish  # the registry client: only to push
        if args.output:
            name = result.names[0] if result.names else ""
            publish.write_layout(store, result.digest, args.output, name=name)
            progress(f"wrote {args.output}")
        for name in result.names:
            if args.push:
                pushed = await publish.push(store, name, result.digest, registries=config)
                ctx.print(f"{name}: digest: {pushed} (pushed)")
            elif not quiet:
                ctx.print(f"{name}: digest: {result.digest}")
        if quiet or not result.names:
            ctx.print(result.digest)
        with store.locked():
            store.enforce(limit)
    except (BuildError, OCIError) as exc:
        ctx.error(str(exc))  # a failed build is not a usage error: exit 1, the message as is
        return 1
    return 0


VERBS = {"build": run}

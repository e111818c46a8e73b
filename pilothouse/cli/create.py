"""`pilothouse create`: make one object from the command line, as kubectl create does.

- `create job NAME --from=cronjob/CRONJOB`: a Job from the CronJob's jobTemplate now (its labels
  and annotations, `cronjob.kubernetes.io/instantiate: manual`, and the CronJob as its owner,
  so it goes with it); `create job NAME --image=IMAGE [-- COMMAND ARGS...]`: a Job of one
  container;
- `create namespace NAME` (or `ns`).

Invariant: create never changes an existing object: a name already taken is an error
(`jobs.batch "x" already exists`, exit 1), and nothing is written.
"""

from __future__ import annotations

import argparse

from google.protobuf.message import Message

from pilothouse.cli import output, resources
from pilothouse.cli.context import Context
from pilothouse.client import Client, ClientError, ErrorCode
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2 as o

MANUAL = "cronjob.kubernetes.io/instantiate"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "create",
        help="create a job (from a cronjob or image) or a namespace",
        description="Create one object: `create job NAME --from=cronjob/NAME`, "
        "`create job NAME --image=IMAGE -- COMMAND...`, `create namespace NAME`.",
    )
    parser.add_argument("what", metavar="KIND", help="job or namespace (ns)")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--from", dest="source", default="", help="cronjob/NAME")
    parser.add_argument("--image", default="", help="the job's container image")
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("command", nargs="*", metavar="COMMAND", help="after --: the command")


async def run(args: argparse.Namespace, ctx: Context) -> int:
    what = args.what.lower()
    if what in ("namespace", "ns"):
        obj: Message = o.Namespace(metadata=o.ObjectMeta(name=args.name))
    elif what in ("job", "jobs"):
        namespace = ctx.namespace(args.namespace)
        async with ctx.connect() as client:
            obj = await _job(client, args, namespace=namespace)
    else:
        raise resources.UsageError(f'cannot create "{args.what}": give job or namespace')
    async with ctx.connect() as client:
        kind = Kind.NAMESPACE if isinstance(obj, o.Namespace) else Kind.JOB
        try:
            await client.get(kind, args.name, namespace=obj.metadata.namespace)  # type: ignore[attr-defined]
        except ClientError as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
        else:
            ctx.error(f'{kind.info.plural}{_group(kind)} "{args.name}" already exists')
            return 1
        await client.apply(obj)
    ctx.print(f"{output.reference(kind, args.name)} created")
    return 0


def _group(kind: Kind) -> str:
    group = kind.info.api_version.rpartition("/")[0]
    return f".{group}" if group else ""


async def _job(client: Client, args: argparse.Namespace, *, namespace: str) -> o.Job:
    job = o.Job()
    job.metadata.name = args.name
    job.metadata.namespace = namespace
    if args.source:
        kind, _, name = args.source.partition("/")
        if not name or resources.parse_targets([args.source], verb="create")[0].kind != (
            Kind.CRONJOB
        ):
            raise resources.UsageError(f"--from must be cronjob/NAME, got {args.source!r}")
        del kind
        cronjob = await client.get(Kind.CRONJOB, name, namespace=namespace)
        assert isinstance(cronjob, o.CronJob)
        template = cronjob.spec.job_template
        job.metadata.labels.update(template.metadata.labels)
        job.metadata.annotations.update(template.metadata.annotations)
        job.metadata.annotations[MANUAL] = "manual"
        job.metadata.owner_references.add(
            api_version="batch/v1",
            kind="CronJob",
            name=cronjob.metadata.name,
            uid=cronjob.metadata.uid,
            controller=True,
        )
        job.spec.CopyFrom(template.spec)
        return job
    if not args.image:
        raise resources.UsageError("create job needs --from=cronjob/NAME or --image=IMAGE")
    container = job.spec.template.spec.containers.add(name=args.name, image=args.image)
    container.command.extend(args.command)
    job.spec.template.spec.restart_policy = "Never"
    return job

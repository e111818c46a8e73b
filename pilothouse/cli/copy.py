"""`pilothouse cp POD:PATH LOCAL` and `pilothouse cp LOCAL POD:PATH`: files to and from a
container as a tar stream, as kubectl does it: `tar cf -` (or `tar xmf -`) run in the container
through exec, the archive read (or made) here.

Safety of what comes out of a container (it may be hostile): before anything is written, every
entry of the archive is checked (`check_members`) and the copy is refused, with the entry named,
when one would land outside the destination: an absolute name, a `..` component, a symbolic or
hard link whose target leaves the destination (absolute, or climbing out), and device files.
Extraction then goes through Python's `data` filter as a second guard.

Invariants: nothing is written locally unless every entry passed; the archive is spooled to a
temporary file (memory up to 8 MiB), never held whole in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import posixpath
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from pilothouse.cli import podtarget
from pilothouse.cli.context import Context
from pilothouse.cli.usage import UsageError
from pilothouse.kinds import Kind
from pilothouse.v1 import agent_pb2
from pilothouse.v1 import controlplane_pb2_grpc as api_grpc

CHUNK = 64 * 1024


class UnsafeArchive(ValueError):
    """An entry of the archive would be written outside the destination."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cp",
        help="copy files between a container and this machine",
        description="Copy files: `cp POD:PATH LOCAL` or `cp LOCAL POD:PATH` (a tar stream; the "
        "container needs tar).",
    )
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("destination", metavar="DEST")
    parser.add_argument("-c", "--container", default="", help="the container (default: first)")
    parser.add_argument("-n", "--namespace", default=None)


def _remote(word: str) -> tuple[str, str] | None:
    """`POD:PATH` -> (pod, path); a local path (no colon before any slash) -> None."""
    head, sep, path = word.partition(":")
    if not sep or "/" in head or not head:
        return None
    return head, path


async def run(args: argparse.Namespace, ctx: Context) -> int:
    source, destination = _remote(args.source), _remote(args.destination)
    if (source is None) == (destination is None):
        raise UsageError(
            "cp copies between a pod and here: `cp POD:PATH LOCAL` or `cp LOCAL POD:PATH`"
        )
    namespace = ctx.namespace(args.namespace)
    async with ctx.connect() as client:
        remote = source or destination
        assert remote is not None
        pod_name, path = remote
        if not path:
            raise UsageError("a path in the container is required: POD:PATH")
        pod, _ = await podtarget.resolve(
            client, Kind.POD, pod_name, namespace=namespace, err=ctx.err
        )
        stub = client.service(api_grpc.PodAccessStub)
        start = agent_pb2.ExecStart(
            namespace=pod.metadata.namespace, pod=pod.metadata.name, container=args.container
        )
        with client.errors(Kind.POD, pod.metadata.name):
            if source is not None:
                await _from_pod(stub, start, path, Path(args.destination), ctx)
            else:
                await _to_pod(stub, start, Path(args.source), path, ctx)
    return 0


async def _from_pod(
    stub: object, start: agent_pb2.ExecStart, path: str, local: Path, ctx: Context
) -> None:
    path = path.rstrip("/") or "/"
    parent, base = posixpath.split(path)
    start.command.extend(["tar", "cf", "-", "-C", parent or "/", base or "."])
    errors = bytearray()
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        code = await _exec(stub, start, stdin=None, stdout=spool.write, stderr=errors.extend)
        if code != 0:
            raise UsageError(f"cannot copy {path} out of the container: {_why(errors, code)}")
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:") as archive:
            members = archive.getmembers()
            check_members(members, root=base or ".")
            _extract(archive, members, root=base or ".", destination=local)


async def _to_pod(
    stub: object, start: agent_pb2.ExecStart, local: Path, path: str, ctx: Context
) -> None:
    path = path.rstrip("/") or "/"
    parent, base = posixpath.split(path)
    start.command.extend(["tar", "xmf", "-", "-C", parent or "/"])
    start.stdin = True
    data = _archive(local, arcname=base or local.name)
    errors = bytearray()

    async def chunks() -> AsyncIterator[bytes]:
        view = data.getbuffer()
        for i in range(0, len(view), CHUNK):
            yield bytes(view[i : i + CHUNK])

    code = await _exec(stub, start, stdin=chunks(), stdout=lambda _: None, stderr=errors.extend)
    if code != 0:
        raise UsageError(f"cannot copy {local} into the container: {_why(errors, code)}")


async def _exec(stub, start, *, stdin, stdout, stderr) -> int:  # type: ignore[no-untyped-def]
    async def requests() -> AsyncIterator[agent_pb2.ExecInput]:
        yield agent_pb2.ExecInput(start=start)
        if stdin is not None:
            async for chunk in stdin:
                yield agent_pb2.ExecInput(stdin=chunk)
            yield agent_pb2.ExecInput(stdin_closed=True)
        await asyncio.Event().wait()  # keep the stream open until the process ends

    call = stub.Exec(requests())
    code = 1
    try:
        async for out in call:
            which = out.WhichOneof("output")
            if which == "stdout":
                stdout(out.stdout)
            elif which == "stderr":
                stderr(out.stderr)
            elif which == "exit":
                code = out.exit.code
                break
    finally:
        call.cancel()
    return code


def _archive(local: Path, *, arcname: str) -> io.BytesIO:
    if not os.path.exists(local):
        raise UsageError(f"{local}: no such file or directory")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:") as archive:
        archive.add(str(local), arcname=arcname)
    return data


def _why(errors: bytearray, code: int) -> str:
    lines = errors.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"tar exited with {code}"


def check_members(members: list[tarfile.TarInfo], *, root: str) -> None:
    """Raise UnsafeArchive for the first entry that would land outside the destination (the
    copied file or directory, `root` in the archive)."""
    for member in members:
        name = member.name
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/"):
            raise UnsafeArchive(f'refusing to copy: tar entry "{name}" has an absolute path')
        if ".." in parts:
            raise UnsafeArchive(f'refusing to copy: tar entry "{name}" climbs out with ".."')
        if member.isdev() or member.isfifo():
            raise UnsafeArchive(f'refusing to copy: tar entry "{name}" is a device or fifo')
        if not (member.issym() or member.islnk()):
            continue
        target = member.linkname
        if target.startswith("/"):
            raise UnsafeArchive(
                f'refusing to copy: tar entry "{name}" links to the absolute path "{target}"'
            )
        if member.issym():
            outside = _climbs_out(len(parts[1:-1]), target)  # from its directory in root
        else:  # a hard link names an entry of the archive
            link = [p for p in target.split("/") if p not in ("", ".")]
            outside = not link or link[0] != root or _climbs_out(0, "/".join(link[1:]))
        if outside:
            raise UnsafeArchive(
                f'refusing to copy: tar entry "{name}" links outside the destination ("{target}")'
            )


def _climbs_out(depth: int, target: str) -> bool:
    """Whether relative `target`, followed from `depth` directories below the destination,
    leaves it at some step."""
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _extract(
    archive: tarfile.TarFile, members: list[tarfile.TarInfo], *, root: str, destination: Path
) -> None:
    """Extract with `root/` (the copied file or directory's own name) renamed to destination."""
    if destination.is_dir() and not any(m.name == root and m.isdir() for m in members):
        destination = destination / root  # a file into an existing directory keeps its name
    target_dir = destination.parent.resolve()
    target_dir.mkdir(parents=True, exist_ok=True)
    renamed = []
    for member in members:
        name = member.name
        if name == root or name.startswith(root + "/"):
            member.name = destination.name + name[len(root) :]
        renamed.append(member)
    archive.extractall(path=target_dir, members=renamed, filter="data")

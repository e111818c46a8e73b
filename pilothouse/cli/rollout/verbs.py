"""`pilothouse rollout status|history|undo|pause|resume|restart deployment/NAME`, as kubectl's.

Thin wrappers over the rest of `pilothouse.cli.rollout`, which holds the logic and kubectl's
messages; this module only reads the command line and prints.

Invariants:
- The Deployment is named as `deployment/NAME` or `deployment NAME`, with any of the kind's
  names (`deploy`, `deployments` …); any other kind is a usage error.
- `rollout status` exits 0 only when the rollout is complete (or once with `--watch=false`),
  and 1 with one `error:` line giving the reason (progress deadline exceeded, `--timeout`,
  a revision that is not the running one). On a terminal its progress is one bar that redraws
  itself; otherwise each new status is one line, word for word kubectl's.
- A verb the Deployment's state refuses (undo with no history, pause when paused …) prints
  kubectl's reason as one `error:` line and exits 1; nothing is written.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence

from pilothouse.cli import resources, rollout
from pilothouse.cli.context import Context
from pilothouse.cli.resources import UsageError
from pilothouse.cli.rollout import sets
from pilothouse.kinds import Kind

_TRUE = ("true", "t", "1", "yes")
_FALSE = ("false", "f", "0", "no")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
BAR_CELLS = 20


def deployment_name(words: Sequence[str], *, verb: str) -> str:
    """The one Deployment named by `deployment/NAME` or `deployment NAME` (any alias)."""
    kind, name = resources.single(words, verb=verb)
    if kind is not Kind.DEPLOYMENT:
        raise UsageError(f"{verb} works on deployments, not {kind.info.plural}")
    return name


def parse_duration(text: str) -> float:
    """Seconds in a Go duration as kubectl takes it (`30s`, `5m`, `1h30m`, `500ms`, `0`); a bare
    number counts as seconds. 0 means no limit."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        if not value or _DURATION.sub("", value):
            raise UsageError(
                f"--timeout {text!r} is not a duration like 30s, 5m or 1h30m"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    if seconds < 0:
        raise UsageError("--timeout must not be negative")
    return seconds


class _BoolFlag(argparse.Action):
    """kubectl's bool flag: `-w`, `-w=false`, `--watch=true`. A next word that is no boolean
    is not the flag's value but the object (`rollout status -w deploy web`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        value = True
        if isinstance(values, str):
            word = values.lower()
            if word in _FALSE:
                value = False
            elif word not in _TRUE:
                namespace.leading = [*getattr(namespace, "leading", []), values]
        setattr(namespace, self.dest, value)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="manage the rollout of a deployment (status, history, undo, pause, resume, restart)",
        description="Manage a Deployment's rollout: `rollout status deployment/web`.",
    )
    verbs = parser.add_subparsers(
        dest="rollout_verb", metavar="status|history|undo|pause|resume|restart", required=True
    )
    target = "KIND/NAME | KIND NAME"  # deployment; daemonset, statefulset (not pause/resume)

    status = verbs.add_parser(
        "status",
        help="follow a rollout until it completes",
        description="Show the rollout's progress until it completes (exit 0) or fails (exit 1).",
    )
    status.add_argument("resources", nargs="*", metavar=target)
    status.add_argument(
        "-w",
        "--watch",
        action=_BoolFlag,
        nargs="?",
        default=True,
        metavar="true|false",
        help="follow the rollout (default true); false prints the status once",
    )
    status.add_argument(
        "--timeout", default="0s", help="give up after this long, e.g. 30s, 5m (0: never)"
    )
    status.add_argument(
        "--revision", type=int, default=0, help="fail unless this revision is the one rolling out"
    )
    status.set_defaults(leading=[])

    history = verbs.add_parser(
        "history",
        help="list a deployment's revisions",
        description="List revisions with their change cause and images (digests, and tags as "
        "written); `--revision N` shows that revision's pod template.",
    )
    history.add_argument("resources", nargs="+", metavar=target)
    history.add_argument("--revision", type=int, default=0, help="show this revision in full")

    undo = verbs.add_parser(
        "undo",
        help="roll back to the previous (or a given) revision",
        description="Roll back to the previous revision, or to `--to-revision N`, running that "
        "revision's exact image digests.",
    )
    undo.add_argument("resources", nargs="+", metavar=target)
    undo.add_argument(
        "--to-revision", type=int, default=0, help="the revision to go back to (0: the previous)"
    )

    for verb, text in (
        ("pause", "stop rolling out changes to the template until resumed"),
        ("resume", "resume a paused deployment"),
        ("restart", "replace every pod with a fresh one (a new revision)"),
    ):
        verbs.add_parser(verb, help=text, description=text).add_argument(
            "resources", nargs="+", metavar=target
        )
    for sub in verbs.choices.values():
        sub.add_argument("-n", "--namespace", default=None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    words = [*getattr(args, "leading", []), *args.resources]
    kind, _ = resources.single(words, verb=f"rollout {args.rollout_verb}")
    if kind in sets.SETS:
        return await _set_verb(args, ctx, words=words)
    name = deployment_name(words, verb=f"rollout {args.rollout_verb}")
    namespace = ctx.namespace(args.namespace)
    if args.rollout_verb == "status":
        timeout = parse_duration(args.timeout)  # before connecting: a typo fails fast
    try:
        if args.rollout_verb == "status":
            return await _status(args, ctx, name=name, namespace=namespace, give_up_after=timeout)
        if args.rollout_verb == "history":
            return await _history(args, ctx, name=name, namespace=namespace)
        async with ctx.connect() as client:
            if args.rollout_verb == "undo":
                message = await rollout.undo(
                    client, name, namespace=namespace, to_revision=args.to_revision
                )
            elif args.rollout_verb == "restart":
                message = await rollout.restart(
                    client, name, namespace=namespace, now=ctx.now().timestamp()
                )
            else:
                pause = args.rollout_verb == "pause"
                message = await rollout.set_paused(client, name, pause, namespace=namespace)
    except rollout.RolloutError as exc:
        ctx.error(str(exc))
        return 1
    ctx.print(message)
    return 0


async def _status(
    args: argparse.Namespace, ctx: Context, *, name: str, namespace: str, give_up_after: float
) -> int:
    async with ctx.connect() as client:
        if not args.watch:
            deployment = await client.get(Kind.DEPLOYMENT, name, namespace=namespace)
            ctx.print(rollout.status_of(deployment, revision=args.revision).message)  # type: ignore[arg-type]
            return 0
        progress = Progress(ctx, name=name)
        try:
            done = await rollout.watch_status(
                client,
                name,
                namespace=namespace,
                revision=args.revision,
                give_up_after=give_up_after or None,
                progress=progress.show,
                on_retry=ctx.warn,
            )
        except BaseException:
            progress.close(success=False)
            raise
    progress.close(success=True)
    ctx.print(done.message)
    return 0


async def _history(args: argparse.Namespace, ctx: Context, *, name: str, namespace: str) -> int:
    async with ctx.connect() as client:
        deployment, replicasets = await rollout.read(client, name, namespace=namespace)
    if args.revision:
        for rs in replicasets:
            if rollout.revision_of(rs) == args.revision:
                ctx.out.write(rollout.revision_detail(name, rs))
                ctx.out.flush()
                return 0
        raise rollout.RolloutError(f"unable to find the specified revision {args.revision}")
    rows = rollout.history_rows(deployment, replicasets)
    if not rows:
        ctx.print("No rollout history found.")
        return 0
    ctx.out.write(rollout.history_table(name, rows))
    ctx.out.flush()
    return 0


async def _set_verb(args: argparse.Namespace, ctx: Context, *, words: Sequence[str]) -> int:
    """`rollout VERB daemonset/NAME` or `statefulset/NAME` (`rollout.sets`)."""
    kind, name = resources.single(words, verb=f"rollout {args.rollout_verb}")
    namespace = ctx.namespace(args.namespace)
    verb = args.rollout_verb
    try:
        async with ctx.connect() as client:
            if verb == "status":
                give_up = parse_duration(args.timeout) or None
                if not args.watch:
                    ctx.print(sets.status_of(await client.get(kind, name, namespace=namespace))
                              .message)  # fmt: skip
                    return 0
                progress = Progress(ctx, name=name)
                try:
                    done = await sets.watch_status(
                        client, kind, name, namespace=namespace, give_up_after=give_up,
                        progress=progress.show,
                    )  # fmt: skip
                except BaseException:
                    progress.close(success=False)
                    raise
                progress.close(success=True)
                ctx.print(done.message)
                return 0
            if verb == "history":
                _, history = await sets.revisions(client, kind, name, namespace=namespace)
                if args.revision:
                    found = next((r for r in history if r.revision == args.revision), None)
                    if found is None:
                        raise rollout.RolloutError(
                            f"unable to find the specified revision {args.revision}"
                        )
                    ctx.out.write(sets.revision_detail(kind, name, found))
                elif not history:
                    ctx.print("No rollout history found.")
                else:
                    ctx.out.write(sets.history_table(kind, name, history))
                ctx.out.flush()
                return 0
            if verb == "undo":
                message = await sets.undo(
                    client, kind, name, namespace=namespace, to_revision=args.to_revision
                )
            elif verb == "restart":
                message = await sets.restart(
                    client, kind, name, namespace=namespace, now=ctx.now().timestamp()
                )
            else:
                raise rollout.RolloutError(
                    f'{kind.info.plural}.apps "{name}" {verb}ing is not supported'
                )
    except rollout.RolloutError as exc:
        ctx.error(str(exc))
        return 1
    ctx.print(message)
    return 0


class Progress:
    """A rollout's progress as a person follows it: kubectl's "Waiting for …" lines, or on a
    terminal one line that redraws itself: a bar of available (#), ready (=) and updated (-)
    replicas out of the desired count, with the counts and kubectl's message beside it."""

    def __init__(self, ctx: Context, *, name: str) -> None:
        self._ctx = ctx
        self._name = name
        self._terminal = _isatty(ctx)
        self._printed = ""
        self._drawn = False

    def show(self, status: rollout.RolloutStatus) -> None:
        if status.done:
            return  # the caller prints the final message
        if not self._terminal:
            if status.message != self._printed:
                self._ctx.print(status.message)
                self._printed = status.message
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        line = f"{self._name} {bar(status)} {_counts(status)}  {_reason(status.message)}"
        self._ctx.out.write("\r\x1b[2K" + line[:width])
        self._ctx.out.flush()
        self._drawn = True

    def close(self, *, success: bool) -> None:
        """Clear the bar before the final message, or keep it above an error."""
        if self._drawn:
            self._ctx.out.write("\r\x1b[2K" if success else "\n")
            self._ctx.out.flush()
            self._drawn = False


def bar(status: rollout.RolloutStatus, *, cells: int = BAR_CELLS) -> str:
    """`[#####=====-----.....]`: available, ready (not yet available), updated, the rest."""
    desired = max(status.desired, 0)

    def share(count: int) -> int:
        return cells if desired == 0 else round(cells * min(max(count, 0), desired) / desired)

    available = share(status.available)
    ready = max(share(status.ready) - available, 0)
    updated = max(share(status.updated) - available - ready, 0)
    rest = cells - available - ready - updated
    return "[" + "#" * available + "=" * ready + "-" * updated + "." * rest + "]"


def _counts(status: rollout.RolloutStatus) -> str:
    d = status.desired
    return (
        f"{status.updated}/{d} updated, {status.ready}/{d} ready, {status.available}/{d} available"
    )


def _reason(message: str) -> str:
    """kubectl's message without its `Waiting for deployment "web" rollout to finish: ` lead."""
    return message.partition("rollout to finish: ")[2] or message


def _isatty(ctx: Context) -> bool:
    isatty = getattr(ctx.out, "isatty", None)
    return bool(isatty and isatty())


VERBS = {"rollout": run}

"""`pilothouse get controlplanes` and `pilothouse describe controlplane [NAME]`.

Not objects of a kind: the members of the control plane, as any member reads them from etcd
(`ControlPlanes.List`): whether each runs (its leader lease is alive), which one leads, how its
etcd member answers, and the last leader changes.

`get` columns: NAME, STATUS (Ready while it campaigns, else NotReady), ROLE (leader or -),
ADDRESS (its API), ETCD (its etcd member: healthy, "healthy, raft leader", unreachable or
unhealthy; describe gives the error),
TERM (the create revision of its campaign key: the leader's fencing token). `-o json|yaml`
prints the whole answer. `describe` adds each member's etcd endpoint and the leader changes,
newest first: when, who, its term, who led before, and why that term ended.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from pilothouse.cli import output, tables
from pilothouse.cli.context import Context
from pilothouse.cli.output import Format
from pilothouse.v1 import controlplane_pb2 as api

NAMES = frozenset({"controlplanes", "controlplane", "cp", "cps"})
_HISTORY_SHOWN = 10


def wanted(resources: list[str]) -> bool:
    """Whether `get`/`describe` was asked for control planes ("controlplanes [NAME]",
    "controlplane/NAME")."""
    return bool(resources) and resources[0].partition("/")[0].lower() in NAMES


def _names(resources: list[str]) -> list[str]:
    _, _, name = resources[0].partition("/")
    return ([name] if name else []) + resources[1:]


async def get(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        answer = await client.controlplanes()
    names = _names(args.resources)
    members = [m for m in answer.members if not names or m.name in names]
    missing = [n for n in names if n not in {m.name for m in answer.members}]
    for name in missing:
        ctx.warn(f'error: controlplane "{name}" not found')
    fmt = Format(args.output or "")
    if fmt in (Format.JSON, Format.YAML):
        from google.protobuf.json_format import MessageToDict  # only for -o json/yaml

        data = MessageToDict(answer, preserving_proto_field_name=False)
        data["members"] = [d for d in data.get("members", []) if not names or d["name"] in names]
        ctx.print(output.dump_json(data) if fmt is Format.JSON else output.dump_yaml(data))
    elif fmt is Format.NAME:
        ctx.print("\n".join(f"controlplane/{m.name}" for m in members))
    elif members:
        ctx.print(tables.render(table(answer, members)))
    elif not missing:
        ctx.warn("No control-plane members found.")
    return 1 if missing else 0


def table(answer: api.ListControlPlanesResponse, members: list) -> tables.Table:  # type: ignore[type-arg]
    rows = tuple(
        (
            m.name,
            "Ready" if m.alive else "NotReady",
            "leader" if m.leader else "-",
            m.address or "-",
            etcd_health(m),
            str(m.term) if m.term else "-",
        )
        for m in members
    )
    return tables.Table(headers=("NAME", "STATUS", "ROLE", "ADDRESS", "ETCD", "TERM"), rows=rows)


def etcd_health(member: api.ControlPlaneMember, *, short: bool = True) -> str:
    """The member's etcd as a table cell (`short`: the reason cut to its kind)."""
    if not member.etcd_endpoint and not member.HasField("etcd"):
        return "external"
    if not member.HasField("etcd"):
        return "unknown"
    etcd = member.etcd
    if etcd.healthy:
        return "healthy, raft leader" if etcd.leader else "healthy"
    if not etcd.error:
        return "unhealthy"
    if not short:
        return f"unhealthy: {etcd.error}"
    unreachable = any(w in etcd.error for w in ("UNAVAILABLE", "connect", "DEADLINE"))
    return "unreachable" if unreachable else "unhealthy"


async def describe(args: argparse.Namespace, ctx: Context) -> int:
    async with ctx.connect() as client:
        answer = await client.controlplanes()
    names = _names(args.resources)
    members = [m for m in answer.members if not names or m.name in names]
    missing = [n for n in names if n not in {m.name for m in answer.members}]
    for name in missing:
        ctx.warn(f'error: controlplane "{name}" not found')
    pages = [page(m, answer, now=ctx.now()) for m in members]
    if pages:
        ctx.print("\n\n".join(pages))
    return 1 if missing else 0


def page(
    member: api.ControlPlaneMember, answer: api.ListControlPlanesResponse, *, now: datetime
) -> str:
    leader = next((m.name for m in answer.members if m.leader), "<none>")
    lines = [
        f"Name:           {member.name}",
        f"Status:         {'Ready' if member.alive else 'NotReady (not campaigning: down?)'}",
        f"Role:           {'leader' if member.leader else 'standby'} (leader: {leader})",
        f"Address:        {member.address or '-'}",
        f"Term:           {member.term or '-'}",
        f"Etcd:           {member.etcd_endpoint or 'external'}",
        f"  Health:       {etcd_health(member, short=False)}",
    ]
    if member.HasField("etcd"):
        lines.append(f"  Member:       {member.etcd.name} (raft term {member.etcd.raft_term})")
    lines.append(f"Etcd cluster:   {len(answer.etcd)} members")
    for etcd in answer.etcd:
        state = "healthy" if etcd.healthy else f"unhealthy {etcd.error}".strip()
        role = ", raft leader" if etcd.leader else ""
        lines.append(f"  {etcd.name or '?'}: {state}{role} ({', '.join(etcd.client_urls)})")
    lines.append(f"Served by:      {answer.served_by}")
    lines.append("Leader changes (newest first):")
    changes = list(answer.history)[-_HISTORY_SHOWN:][::-1]
    if not changes:
        lines.append("  <none>")
    else:
        rows = tuple(
            (
                tables.human_duration(now.timestamp() - c.time),
                c.leader,
                str(c.term),
                c.previous or "-",
                _ended(c, now=now),
            )
            for c in changes
        )
        rendered = tables.render(
            tables.Table(headers=("AGE", "LEADER", "TERM", "PREVIOUS", "ENDED"), rows=rows)
        )
        lines.extend("  " + line for line in rendered.splitlines())
    return "\n".join(lines)


def _ended(change: api.LeaderChange, *, now: datetime) -> str:
    if not change.ended:
        return "leading" if not change.reason else change.reason
    ago = tables.human_duration(now.timestamp() - change.ended)
    return f"{change.reason or 'ended'} {ago} ago"

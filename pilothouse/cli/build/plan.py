"""Stages and the order to build them: which stages the target needs, with their bases.

`plan(containerfile, build_args=…, target=…)` splits the instructions into stages at each FROM,
expands FROM with the global ARGs (those before the first FROM), resolves `FROM <stage>` and
`COPY --from=<stage|index>` to earlier stages, and keeps only the stages the target needs, in
build order. Each instruction's arguments are checked for shape here (counts, flags, no remote
URLs), so a mistake on line 40 is reported before line 3 runs.

Invariants: pure (no file, network or process); a stage only ever depends on earlier stages;
every error names the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pilothouse.cli.build import BuildError, located, words
from pilothouse.cli.build.containerfile import Containerfile, Instruction

SCRATCH = "scratch"
# Docker's predefined ARGs: usable without an ARG line, and never warned about.
PREDEFINED_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
_MIN_ARGS = {"COPY": 2, "ADD": 2, "WORKDIR": 1, "USER": 1, "STOPSIGNAL": 1, "EXPOSE": 1}
_NO_ARGS_OK = {"RUN": False, "CMD": True, "ENTRYPOINT": True}


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    name: str  # lower-cased `AS name`, or "" when unnamed
    base: str  # "scratch", an image reference (expanded), or "stage:<index>"
    from_instruction: Instruction
    instructions: tuple[Instruction, ...]
    copies_from: tuple[int, ...] = ()  # earlier stages this one copies from

    @property
    def label(self) -> str:
        return self.name or str(self.index)

    @property
    def base_stage(self) -> int | None:
        return int(self.base.split(":", 1)[1]) if self.base.startswith("stage:") else None


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[Stage, ...]  # only those the target needs, in build order
    target: Stage
    global_args: dict[str, str | None] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)


def plan(
    containerfile: Containerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> Plan:
    """Split into stages, resolve references between them, keep what `target` needs."""
    build_args = dict(build_args or {})
    instructions = list(containerfile.instructions)
    global_args: dict[str, str | None] = {}
    while instructions and instructions[0].keyword == "ARG":
        for name, default in _arg_pairs(instructions.pop(0), {}):
            global_args[name] = build_args.get(name, default)
    if not instructions:
        raise BuildError(located(containerfile.file, 0, "no FROM instruction: nothing to build"))
    if instructions[0].keyword != "FROM":
        first = instructions[0]
        raise first.error("the first instruction must be FROM (only ARG may come before it)")
    scope = {k: v for k, v in global_args.items() if v is not None}
    stages: list[Stage] = []
    names: dict[str, int] = {}
    current: list[Instruction] = []
    head: Instruction | None = None
    for ins in [*instructions, None]:
        if ins is None or ins.keyword == "FROM":
            if head is not None:
                stages.append(_stage(len(stages), head, current, names, scope, containerfile))
                if stages[-1].name:
                    names[stages[-1].name] = stages[-1].index
            head, current = ins, []
            continue
        _check(ins)
        current.append(ins)
    chosen = _target(stages, target, containerfile)
    needed = _closure(stages, chosen.index)
    return Plan(
        stages=tuple(s for s in stages if s.index in needed),
        target=chosen,
        global_args=global_args,
        build_args=build_args,
    )


def _arg_pairs(ins: Instruction, env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    try:
        for word in words.split(ins.args, env):
            name, eq, default = word.partition("=")
            if not name:
                raise ins.error(f"{word!r} is not NAME or NAME=DEFAULT")
            out.append((name, default if eq else None))
    except words.WordError as exc:
        raise ins.error(str(exc)) from None
    if not out:
        raise ins.error("needs a NAME")
    return out


def _stage(
    index: int,
    head: Instruction,
    body: list[Instruction],
    names: dict[str, int],
    scope: Mapping[str, str],
    cf: Containerfile,
) -> Stage:
    try:
        parts = words.split(head.args, scope, escape=cf.escape)
    except words.WordError as exc:
        raise head.error(str(exc)) from None
    if len(parts) == 3 and parts[1].lower() == "as":
        image, name = parts[0], parts[2].lower()
    elif len(parts) == 1:
        image, name = parts[0], ""
    else:
        raise head.error("expected `FROM IMAGE [AS NAME]`")
    if name and name in names:
        raise head.error(f"stage name {name!r} is already used by stage {names[name]}")
    if not image:
        raise head.error("the image name expands to nothing (is a build ARG unset?)")
    base = image
    if image.lower() == SCRATCH:
        base = SCRATCH
    elif image.lower() in names:
        base = f"stage:{names[image.lower()]}"
    copies: list[int] = []
    for ins in body:
        ref = ins.flags.get("from") if ins.keyword == "COPY" else None
        if ref is None:
            continue
        if ref.lower() in names:
            copies.append(names[ref.lower()])
        elif ref.isdigit():
            if int(ref) >= index:
                raise ins.error(f"--from={ref}: only an earlier stage can be copied from")
            copies.append(int(ref))
        elif ref.lower() == name:
            raise ins.error(f"--from={ref}: a stage cannot copy from itself")
    return Stage(
        index=index,
        name=name,
        base=base,
        from_instruction=head,
        instructions=tuple(body),
        copies_from=tuple(sorted(set(copies))),
    )


def _check(ins: Instruction) -> None:
    """Shape checks that need no environment."""
    kw = ins.keyword
    empty = not ins.args.strip() and not ins.heredocs and ins.exec_form is None
    if empty and not _NO_ARGS_OK.get(kw, False):
        raise ins.error("needs arguments")
    if kw in _MIN_ARGS and not ins.heredocs:
        count = len(ins.exec_form) if ins.exec_form is not None else len(ins.args.split())
        if count < _MIN_ARGS[kw]:
            raise ins.error(f"needs at least {_MIN_ARGS[kw]} argument(s)")
    if kw in ("COPY", "ADD"):
        sources = ins.exec_form[:-1] if ins.exec_form is not None else ins.args.split()[:-1]
        for src in sources:
            if "://" in src or src.startswith("git@"):
                raise ins.error(
                    f"source {src!r} is a remote URL; only local files can be added "
                    "(download it first, into the build context)"
                )
    if kw == "RUN" and ins.flags.get("network", "default") not in ("default", "none", "host"):
        raise ins.error(f"--network={ins.flags['network']}: use default, none or host")
    if kw == "ONBUILD":
        trigger = ins.args.split(None, 1)[0].upper() if ins.args.split() else ""
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ins.error(f"{trigger} is not allowed as an ONBUILD trigger")


def _target(stages: list[Stage], target: str | None, cf: Containerfile) -> Stage:
    if target is None:
        return stages[-1]
    for stage in stages:
        if stage.name == target.lower() or (not stage.name and str(stage.index) == target):
            return stage
    known = ", ".join(s.label for s in stages)
    raise BuildError(f"{cf.file}: no stage named {target!r} to build (stages: {known})")


def _closure(stages: list[Stage], index: int) -> set[int]:
    needed: set[int] = set()
    todo = [index]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        stage = stages[i]
        if stage.base_stage is not None:
            todo.append(stage.base_stage)
        todo.extend(stage.copies_from)
    return needed

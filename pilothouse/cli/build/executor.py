"""The build driver: plan the stages, run each step or take it from the cache, name the image.

`Builder(store, driver=…).build(options)` is one build:

1. parse the Containerfile, open the context (its ignore file may not exclude the Containerfile),
   plan the stages the target needs;
2. per stage: the base state (a stored or pulled image, `scratch`, or an earlier stage's result),
   then each instruction in order. Config-only instructions change the state at once. Layer
   steps (RUN, COPY, ADD) compute their cache key first; a key in the cache means the layer is
   taken as it is, with no work; otherwise the step runs and its layer is cached (not with
   `--no-cache`, which runs every step and caches nothing new);
3. the target's config and manifest are written to the store and named with each tag.

Ordering constraint: a stage's layers are unpacked (for overlay lower dirs and lookups) only when
one of its steps misses the cache, so an unchanged rebuild reads no layer at all.

Invariant: the result depends only on the Containerfile, the context's contents, the build args
and the base images; it is the same digest every time those are the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pilothouse.cli.build import (
    BuildError,
    containerfile,
    copystep,
    imageconfig,
    located,
    steps,
)
from pilothouse.cli.build.context import BuildContext, Source
from pilothouse.cli.build.imageconfig import State
from pilothouse.cli.build.plan import SCRATCH, Plan, Stage, plan
from pilothouse.cli.build.rootfs import RootView
from pilothouse.cli.build.runstep import RuncDriver
from pilothouse.cli.build.store import BuildStore
from pilothouse.oci import reference

if TYPE_CHECKING:
    from pilothouse.oci.registries import RegistriesConfig

log = structlog.get_logger(__name__)

LAYER_STEPS = ("RUN", "COPY", "ADD")


@dataclass(frozen=True, slots=True)
class BuildOptions:
    context: Path
    containerfile: Path | None = None  # default: Containerfile, else Dockerfile, in the context
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    host_network: bool = False
    registries: RegistriesConfig | None = None


@dataclass(frozen=True, slots=True)
class StepReport:
    stage: str
    number: int  # 1-based within the whole build
    instruction: str
    cached: bool  # a layer step taken from the cache (config-only steps are never "run")
    ran: bool  # a layer step that did its work
    layer: str = ""  # the layer's blob digest, "" when the step made none
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class BuildResult:
    digest: str  # manifest digest
    config_digest: str
    layers: tuple[str, ...]  # layer blob digests, base first
    steps: tuple[StepReport, ...]
    names: tuple[str, ...]
    seconds: float

    @property
    def ran(self) -> tuple[StepReport, ...]:
        return tuple(s for s in self.steps if s.ran)


def find_containerfile(context: Path, given: Path | None) -> Path:
    if given is not None:
        path = given if given.is_absolute() or given.exists() else context / given
        if not path.is_file():
            raise BuildError(f"Containerfile {given} does not exist")
        return path
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).is_file():
            return context / name
    raise BuildError(f"no Containerfile or Dockerfile in {context} (give one with -f)")


class Builder:
    def __init__(
        self,
        store: BuildStore,
        *,
        driver: RuncDriver,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.driver = driver
        self.progress = progress or (lambda text: None)

    async def build(self, options: BuildOptions) -> BuildResult:
        started = time.monotonic()
        path = find_containerfile(options.context, options.containerfile)
        shown = path.name if path.parent.resolve() == options.context.resolve() else str(path)
        cf = containerfile.parse(path.read_text(errors="replace"), file=shown)
        ctx = BuildContext(options.context, stat_cache=self.store.stat_cache)
        ctx.check_containerfile(path)
        the_plan = plan(cf, build_args=options.build_args, target=options.target)
        run = _Run(self, options, cf, ctx, the_plan)
        with self.store.locked():
            state = await run.all()
            config_raw, manifest_raw, desc = imageconfig.documents(state)
            self.store.put_blob(config_raw)
            self.store.put_blob(manifest_raw)
            names = tuple(reference.normalize(t) for t in options.tags)
            for name in names:
                self.store.tag(name, desc)
            ctx.save()
        unused = set(options.build_args) - run.used_args
        for name in sorted(unused):
            self.progress(f"warning: build argument {name} was not consumed by any ARG")
        return BuildResult(
            digest=desc.digest,
            config_digest=imageconfig.sha256_digest(config_raw),
            layers=tuple(layer.digest for layer in state.layers),
            steps=tuple(run.reports),
            names=names,
            seconds=time.monotonic() - started,
        )


@dataclass(frozen=True, slots=True)
class _Sources:
    plan: copystep.CopyPlan
    open_source: Callable[[Source], Path]
    lazy: bool  # planned for the key only; plan again before copying


class _Run:
    """The mutable bookkeeping of one build (stage results, step reports)."""

    def __init__(
        self,
        builder: Builder,
        options: BuildOptions,
        cf: containerfile.Containerfile,
        ctx: BuildContext,
        the_plan: Plan,
    ) -> None:
        self.b = builder
        self.store = builder.store
        self.options = options
        self.cf = cf
        self.ctx = ctx
        self.plan = the_plan
        self.results: dict[int, State] = {}
        self.reports: list[StepReport] = []
        self.used_args: set[str] = set()
        self.total = sum(1 + len(s.instructions) for s in the_plan.stages)

    async def all(self) -> State:
        for stage in self.plan.stages:
            self.results[stage.index] = await self.stage(stage)
        return self.results[self.plan.target.index]

    def _say(self, stage: Stage, text: str) -> None:
        self.b.progress(f"[{stage.label}] STEP {len(self.reports) + 1}/{self.total}: {text}")

    async def _image_state(self, name: str, *, where: containerfile.Instruction) -> State:
        from pilothouse.cli.build import pull  # the registry client only when a base is needed

        try:
            digest = await pull.resolve(
                self.store, name, registries=self.options.registries, pull=self.options.pull
            )
        except BuildError as exc:
            raise BuildError(located(where.file, where.line, f"{where.keyword}: {exc}")) from None
        manifest, config = self.store.image(digest)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        key = steps.chain_key("layers", diff_ids)
        return imageconfig.from_image(fs_key=key, manifest=manifest, config=config)

    async def base(self, stage: Stage) -> State:
        if stage.base == SCRATCH:
            return State(fs_key=steps.chain_key("scratch"))
        if stage.base_stage is not None:
            prior = self.results[stage.base_stage]
            return State(
                fs_key=prior.fs_key,
                layers=prior.layers,
                config=dict(prior.config),
                history=prior.history,
                architecture=prior.architecture,
                os=prior.os,
            )
        return await self._image_state(stage.base, where=stage.from_instruction)

    async def stage(self, stage: Stage) -> State:
        self._say(stage, stage.from_instruction.original)
        self.reports.append(
            StepReport(
                stage.label,
                len(self.reports) + 1,
                stage.from_instruction.original,
                cached=False,
                ran=False,
            )
        )
        state = await self.base(stage)
        for ins in stage.instructions:
            self._say(stage, ins.original.splitlines()[0])
            if ins.keyword == "ARG":
                self.used_args.update(
                    w.partition("=")[0] for w in ins.args.split() if w.partition("=")[0]
                )
            if ins.keyword not in LAYER_STEPS:
                state = imageconfig.apply(
                    state,
                    ins,
                    build_args=self.plan.build_args,
                    global_args=self.plan.global_args,
                    escape=self.cf.escape,
                )
                self.reports.append(
                    StepReport(stage.label, len(self.reports) + 1, ins.original, False, False)
                )
                continue
            state = await self.layer_step(stage, ins, state)
        return state

    def lowers(self, state: State) -> list[Path]:
        """The state's layer dirs, top first (unpacking any not unpacked yet)."""
        return [
            self.store.ensure_layer(layer.diff_id, layer.digest) for layer in reversed(state.layers)
        ]

    async def layer_step(self, stage: Stage, ins: containerfile.Instruction, state: State) -> State:
        started = time.monotonic()
        if ins.keyword == "RUN":
            run_plan = steps.run_plan(ins, state, host_network=self.options.host_network)
            key = run_plan.key
        else:
            sources = await self._sources(ins, state, keying=True)
            copy_plan = sources.plan
            key = copy_plan.key
        entry = None if self.options.no_cache else self.store.cache_get(key)
        cached = entry is not None
        if entry is None:
            if ins.keyword == "RUN":
                entry = await steps.run_step(
                    ins,
                    run_plan,
                    lowers=self.lowers(state),
                    store=self.store,
                    driver=self.b.driver,
                )
            else:
                if sources.lazy:
                    sources = await self._sources(ins, state, keying=False)
                copy_plan = sources.plan
                view = RootView(self.lowers(state))
                uid, gid = (
                    steps.lookup_user(view, copy_plan.chown, where=ins)
                    if copy_plan.chown
                    else (0, 0)
                )
                entries = copystep.copy_entries(
                    ins, copy_plan, view=view, open_source=sources.open_source, uid=uid, gid=gid
                )
                entry = copystep.write_copy_layer(entries, store=self.store)
            if not self.options.no_cache or self.store.cache_get(key) is None:
                self.store.cache_put(key, entry)
        seconds = time.monotonic() - started
        self.b.progress(
            "--> cached"
            if cached
            else f"--> done in {seconds:.2f}s"
            + (f", layer {entry.digest[7:19]}" if not entry.empty else ", no change")
        )
        self.reports.append(
            StepReport(
                stage.label,
                len(self.reports) + 1,
                ins.original,
                cached,
                not cached,
                entry.digest,
                seconds,
            )
        )
        return state.with_layer(steps.as_layer(entry), key=key, created_by=ins.original)

    async def _sources(
        self, ins: containerfile.Instruction, state: State, *, keying: bool
    ) -> _Sources:
        """The COPY/ADD plan and how to read its sources. For `--from`, while only the key is
        wanted, nothing is unpacked: the source's fs_key already names its contents."""
        ref = ins.flags.get("from")
        if ref is None:
            select = copystep.context_sources(self.ctx, ins)
            plan_ = copystep.copy_plan(
                ins,
                state,
                select=select,
                content=self.ctx.digest,
                from_key="context",
                escape=self.cf.escape,
            )
            return _Sources(plan_, self.ctx.path, lazy=False)
        index = self._stage_index(ref)
        source = (
            self.results[index] if index is not None else await self._image_state(ref, where=ins)
        )
        if keying:
            plan_ = copystep.copy_plan(
                ins,
                state,
                select=lambda pattern: [],
                content=lambda found: "",
                from_key=source.fs_key,
                escape=self.cf.escape,
            )
            return _Sources(plan_, copystep.view_path(RootView([])), lazy=True)
        view = RootView(self.lowers(source))
        plan_ = copystep.copy_plan(
            ins,
            state,
            select=copystep.view_sources(view, ins, ref),
            content=lambda found: "",
            from_key=source.fs_key,
            escape=self.cf.escape,
        )
        return _Sources(plan_, copystep.view_path(view), lazy=False)

    def _stage_index(self, ref: str) -> int | None:
        for stage in self.plan.stages:
            if stage.name == ref.lower() or (ref.isdigit() and stage.index == int(ref)):
                return stage.index
        return None

"""Cache keys, context hashing, ignore rules and the cache store of `pilothouse build`.

Keys must follow content, never time: touching a file keeps its key, changing one byte changes
it; a RUN key follows its command, environment and parent; config-only steps leave the file
system's key alone. No root needed: nothing here runs a container.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilothouse.cli.build import BuildError, copystep, imageconfig, steps
from pilothouse.cli.build.containerfile import parse
from pilothouse.cli.build.context import BuildContext
from pilothouse.cli.build.imageconfig import State
from pilothouse.cli.build.store import BuildStore, CacheEntry


def _ins(text: str):  # type: ignore[no-untyped-def]
    return parse("FROM scratch\n" + text).instructions[1]


def _copy_key(ctx: BuildContext, text: str, state: State) -> str:
    ins = _ins(text)
    return copystep.copy_plan(
        ins,
        state,
        select=copystep.context_sources(ctx, ins),
        content=ctx.digest,
        from_key="context",
    ).key


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("a\n")
    (root / "src" / "b.txt").write_text("b\n")
    (root / "Containerfile").write_text("FROM scratch\n")
    return root


def test_copy_key_follows_content_not_time(context: Path, tmp_path: Path) -> None:
    state = State(fs_key="base")
    cache = tmp_path / "stat-cache.json"
    first = _copy_key(BuildContext(context, stat_cache=cache), "COPY src/ /app/", state)
    os.utime(context / "src" / "a.txt", (1, 1))
    assert _copy_key(BuildContext(context), "COPY src/ /app/", state) == first, (
        "touching a file changed the COPY key: a rebuild would redo the step"
    )
    (context / "src" / "a.txt").write_text("A\n")
    changed = _copy_key(BuildContext(context), "COPY src/ /app/", state)
    assert changed != first
    assert _copy_key(BuildContext(context), "COPY src/ /elsewhere/", state) != changed
    assert _copy_key(BuildContext(context), "COPY src/ /app/", State(fs_key="other")) != changed


def test_stat_cache_remembers_hashes(context: Path, tmp_path: Path) -> None:
    cache = tmp_path / "stat-cache.json"
    ctx = BuildContext(context, stat_cache=cache)
    _copy_key(ctx, "COPY src/ /app/", State(fs_key="k"))
    ctx.save()
    assert cache.is_file()
    again = BuildContext(context, stat_cache=cache)
    _copy_key(again, "COPY src/ /app/", State(fs_key="k"))
    assert again._dirty is False, "an unchanged context was hashed again"


def test_ignore_rules(context: Path) -> None:
    (context / ".containerignore").write_text("# logs\n*.log\nsrc/b.txt\n**/tmp\n!keep.log\n")
    ctx = BuildContext(context)
    assert ctx.excluded_by("x.log") is not None and ctx.excluded_by("x.log").line == 2
    assert ctx.excluded_by("keep.log") is None, "a ! exception re-includes the file"
    assert ctx.excluded_by("src/b.txt") is not None
    assert ctx.excluded_by("a/b/tmp/file") is not None, "** matches any depth, and under a dir"
    assert ctx.excluded_by("src/a.txt") is None
    names = [s.under for s in ctx.select("src", where="Containerfile:2: COPY")]
    assert names == ["a.txt"]


def test_ignore_file_excluding_the_containerfile_is_an_error(context: Path) -> None:
    (context / ".dockerignore").write_text("src\nContainer*\n")
    with pytest.raises(BuildError, match=r"^\.dockerignore:2: pattern 'Container\*' excludes"):
        BuildContext(context).check_containerfile(context / "Containerfile")


def test_sources_outside_the_context_are_refused(context: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    (context / "out").symlink_to(tmp_path / "secret")
    (context / "outdir").symlink_to(tmp_path)
    (context / "in").symlink_to("src/a.txt")
    ctx = BuildContext(context)
    for bad in ("../secret", "out", "outdir/secret", "src/../../secret"):
        with pytest.raises(BuildError, match="outside the build context"):
            ctx.select(bad, where="Containerfile:3: COPY")
    assert [s.rel for s in ctx.select("in", where="x")] == ["in"]


def test_run_key_follows_command_env_and_parent() -> None:
    state = State(fs_key="p", config={"Env": ["A=1"]})
    key = steps.run_plan(_ins("RUN make"), state, host_network=False).key
    assert steps.run_plan(_ins("RUN make"), state, host_network=False).key == key
    assert steps.run_plan(_ins("RUN make all"), state, host_network=False).key != key
    other_env = State(fs_key="p", config={"Env": ["A=2"]})
    assert steps.run_plan(_ins("RUN make"), other_env, host_network=False).key != key
    with_arg = State(fs_key="p", config={"Env": ["A=1"]}, args={"V": "2"})
    assert steps.run_plan(_ins("RUN make"), with_arg, host_network=False).key != key
    assert steps.run_plan(_ins("RUN make"), State(fs_key="q"), host_network=False).key != key


def test_config_steps_change_the_config_not_the_file_system_key() -> None:
    state = State(fs_key="fs", config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    for text in (
        "ENV GREETING=hi OTHER=$GREETING",
        "LABEL org.example=yes",
        "WORKDIR /app",
        "WORKDIR sub",
        "USER nobody",
        "EXPOSE 8080 53/udp",
        "VOLUME /data",
        "STOPSIGNAL SIGINT",
        "HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost",
        'ENTRYPOINT ["/bin/app"]',
    ):
        state = imageconfig.apply(state, _ins(text), build_args={}, global_args={})
    assert state.fs_key == "fs"
    conf = state.config
    assert conf["Env"] == ["PATH=/bin", "GREETING=hi", "OTHER="]
    assert conf["WorkingDir"] == "/app/sub"
    assert conf["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert conf["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- localhost"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert "Cmd" not in conf, "ENTRYPOINT resets the base image's CMD"
    assert all(h["empty_layer"] for h in state.history)
    one = imageconfig.documents(state)
    assert imageconfig.documents(state) == one, "the same state gave two different documents"


def test_cache_store_prunes_least_recently_used_first(tmp_path: Path) -> None:
    store = BuildStore(tmp_path / "store")
    for name in ("old", "new"):
        digest = store.put_blob(name.encode() * 1000)
        store.cache_put(name, CacheEntry(diff_id=digest, digest=digest, size=4000))
    os.utime(store.cache / "old.json", (1, 1))
    assert store.cache_get("new") is not None
    pruned = store.prune(limit=3500)
    assert pruned.cache_entries == 1
    assert store.cache_get("old") is None and store.cache_get("new") is not None
    store.prune()
    assert store.usage().total == 0 and store.usage().cache_entries == 0

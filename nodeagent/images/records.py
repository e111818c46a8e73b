"""Image records: one meta record per image on the node and the tags naming them.

Layout under <state-dir>/images:
- meta/<manifest hex>.json  one record per image: digest, config digest, layer digests,
                            diff ids, the runnable config and labels
- tags.json                 normalized reference -> manifest digest
- named.json                normalized reference -> the digest its registry named for it
                            when it was pulled (an index's, for a multi-platform image): what
                            `imagePullPolicy: Always` compares the registry's answer with

Invariants:
- A record counts only while every layer it lists is unpacked (`record` answers None
  otherwise: an interrupted gc means pull or import again).
- Records and tags are read from disk once and kept in memory: the image store is their only
  writer, and every write (`save`, `write_tags`, `forget`) updates or drops the copy it
  changes. Files are replaced atomically (a temporary file, then a rename).
- Tag updates are serialized by `tags_lock`.
- A record file's mtime is the image's last use (`touch`), so it survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from nodeagent.images import Image, ImageConfig
from nodeagent.images.layers import LayerStore
from nodeagent.state.quarantine import read_json
from pilothouse.oci import digest_hex


def _mapping(path: Path, *, instead: str) -> dict[str, str]:
    """A name -> digest file; empty if missing or unreadable (quarantined)."""
    found = read_json(path, instead=instead)
    return found if isinstance(found, dict) else {}


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class ImageRecords:
    def __init__(self, images_dir: Path, *, layers: LayerStore) -> None:
        self.images_dir = images_dir
        self.meta_dir = images_dir / "meta"
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        self.tags_lock = asyncio.Lock()
        self._layers = layers
        # digest -> its parsed meta record, layers verified present (see `record`).
        self._records: dict[str, dict[str, Any]] = {}
        self._tag_cache: dict[str, str] | None = None
        self._named_cache: dict[str, str] | None = None

    # -- tags -----------------------------------------------------------------------------------
    def tags(self) -> dict[str, str]:
        if self._tag_cache is None:
            self._tag_cache = _mapping(
                self.images_dir / "tags.json",
                instead="image names are forgotten: they are pulled or imported again",
            )
        return self._tag_cache

    def write_tags(self, tags: dict[str, str]) -> None:
        self._tag_cache = None  # re-read if the write fails half-way
        write_json(self.images_dir / "tags.json", tags)
        self._tag_cache = tags

    def named(self) -> dict[str, str]:
        if self._named_cache is None:
            self._named_cache = _mapping(
                self.images_dir / "named.json",
                instead="the digests registries named are forgotten: Always pulls again",
            )
        return self._named_cache

    def _write_named(self, named: dict[str, str]) -> None:
        self._named_cache = None
        write_json(self.images_dir / "named.json", named)
        self._named_cache = named

    async def set_tags(self, names: tuple[str, ...], digest: str, *, named: str = "") -> None:
        """Point `names` at the image `digest`; `named`: the digest their registry named."""
        async with self.tags_lock:
            tags = dict(self.tags())
            tags.update(dict.fromkeys(names, digest))
            self.write_tags(tags)
            remembered = {n: d for n, d in self.named().items() if n not in names}
            if named:
                remembered.update(dict.fromkeys(names, named))
            if remembered != self.named():
                self._write_named(remembered)

    async def drop_tags(self, digests: set[str]) -> None:
        """Forget every name of the images `digests` (they were collected)."""
        async with self.tags_lock:
            tags = {n: d for n, d in self.tags().items() if d not in digests}
            self.write_tags(tags)
            self._write_named({n: d for n, d in self.named().items() if n in tags})

    # -- records --------------------------------------------------------------------------------
    def meta_path(self, digest: str) -> Path:
        return self.meta_dir / f"{digest_hex(digest)}.json"

    def record(self, digest: str) -> dict[str, Any] | None:
        """The image's meta record if the image is complete on the node (read from disk once)."""
        meta = self._records.get(digest)
        if meta is None:
            meta = read_json(
                self.meta_path(digest), instead="the image counts as missing: pulled again"
            )
            if not isinstance(meta, dict) or not isinstance(meta.get("diff_ids"), list):
                return None
            if not all(self._layers.has(d) for d in meta["diff_ids"]):
                return None  # layers gone (interrupted gc): pull or import again
            self._records[digest] = meta
        return meta

    def save(self, digest: str, meta: dict[str, Any]) -> None:
        self._records.pop(digest, None)
        write_json(self.meta_path(digest), meta)
        self.touch(digest)
        self._records[digest] = meta

    def metas(self) -> dict[str, dict[str, Any]]:
        """Every meta record on disk, by digest (read afresh; unreadable ones skipped)."""
        found: dict[str, dict[str, Any]] = {}
        for path in self.meta_dir.glob("*.json"):
            try:
                meta = json.loads(path.read_text())
                found[meta["digest"]] = meta
            except (OSError, ValueError, KeyError):
                continue
        return found

    def touch(self, digest: str) -> None:
        """The image was used now (ensured, prepared or released)."""
        now = time.time_ns()  # not the file system's coarser clock: uses stay in order
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.meta_path(digest), ns=(now, now))

    def last_used(self, digest: str) -> float:
        try:
            return self.meta_path(digest).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def remove(self, digest: str) -> None:
        self._records.pop(digest, None)
        self.meta_path(digest).unlink(missing_ok=True)

    def forget(self) -> None:
        """Drop every cached record (gc re-reads them: removed ones must not stay cached)."""
        self._records.clear()

    def image(self, digest: str, reference: str) -> Image | None:
        """The image recorded under `digest`, named `reference`, if it is complete."""
        meta = self.record(digest)
        if meta is None:
            return None
        return Image(
            reference=reference,
            digest=digest,
            config=ImageConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
            ),
            diff_ids=tuple(meta["diff_ids"]),
            labels=dict(meta.get("labels", {})),
        )

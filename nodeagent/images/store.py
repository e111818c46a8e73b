"""LocalImageService: the node's images on disk, pulled from registries or imported archives.

Layout under <state-dir>:
- images/blobs/sha256/<hex>       content store (`content`)
- images/layers/<diff-id hex>/    unpacked layers, shared lower dirs (`layers`)
- images/meta/<manifest hex>.json one record per image: config, layer digests, diff ids
- images/tags.json                reference -> manifest digest (both: `records`), and
  images/named.json               reference -> the digest its registry named at the pull
- images/import/                  drop OCI-layout or docker-save archives here (air-gapped nodes)
- containers/<key>/{upper,work}   a container's private overlay dirs; containers/<key>/image.json
                                  names the image it uses: the on-disk reference count

Invariants:
- An image record exists only once its manifest, config and every layer blob are verified in
  the content store and every layer is unpacked: `ensure` returning means `prepare` can run.
- Concurrent pulls of one reference share one pull (one task per reference).
- Image records and tags are read from disk once and kept in memory: this service is their
  only writer, and every write (`_commit`, `gc`) updates or drops the copy it changes.
- Reference counts live on disk (containers/*/image.json), and last uses in the records'
  mtimes, so `gc` after an agent restart still knows which images are in use and which were
  used lately. `gc` never runs while a pull or import is writing; it chooses through
  `gcplan` (least recently used first, never an image in use or younger than the grace).
- Pull policy as the kubelet applies it: Never never contacts a registry; IfNotPresent only
  when the image is missing; Always asks the registry every time with a HEAD of the
  manifest and fetches only when the digest it names is not the one present (nor the one it
  named when the present image was pulled); a fetch downloads only the blobs that are new.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from nodeagent.images import (
    Image,
    ImageConfig,
    ImageError,
    PullError,
    PullOutcome,
    PullPolicy,
    PullRecord,
    StoredImage,
    gcplan,
)
from nodeagent.images.content import ContentStore
from nodeagent.images.gate import Gate
from nodeagent.images.layers import LayerStore
from nodeagent.images.pulls import Auths, Pulls
from nodeagent.images.records import ImageRecords, write_json
from nodeagent.runtime import Mount
from pilothouse.oci import OCIError, dockerconfig
from pilothouse.oci import manifest as m
from pilothouse.oci.archive import ImageArchive
from pilothouse.oci.reference import Reference, parse
from pilothouse.oci.registries import RegistriesConfig
from pilothouse.oci.registry import RegistryClient, Repository
from pilothouse.oci.unpack import LayerError

log = structlog.get_logger(__name__)


class LocalImageService:
    def __init__(
        self,
        state_dir: Path,
        *,
        registries: RegistriesConfig | None = None,
        client: RegistryClient | None = None,
        max_concurrent_downloads: int = 3,
        gc_grace_seconds: float = 120.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.images_dir = self.state_dir / "images"
        self.import_path = self.images_dir / "import"
        self.containers_dir = self.state_dir / "containers"
        for d in (self.import_path, self.containers_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.images_dir)
        self.layers = LayerStore(self.images_dir)
        self.records = ImageRecords(self.images_dir, layers=self.layers)
        self.client = client or RegistryClient(registries)
        self._downloads = asyncio.Semaphore(max_concurrent_downloads)
        self._pulls = Pulls(lookup=self.lookup, pull=self._pull)
        self._gate = Gate()
        self._gc_grace = gc_grace_seconds
        self.pull_records: deque[PullRecord] = deque(maxlen=100)
        self._imported: dict[Path, tuple[int, int]] = {}  # archive -> (size, mtime_ns) seen

    # -- records --------------------------------------------------------------------------------
    def lookup(self, reference: str) -> Image | None:
        """The image on this node for `reference`, if any (no registry contact)."""
        ref = parse(reference)
        digest = self.records.tags().get(str(ref)) or ref.digest  # a digest may name an index
        return self.records.image(digest, str(ref)) if digest else None

    def list(self) -> list[Image]:
        """Every tagged image on the node."""
        found = [self.records.image(d, name) for name, d in sorted(self.records.tags().items())]
        return [i for i in found if i]

    # -- ensure ---------------------------------------------------------------------------------
    async def ensure(
        self, reference: str, policy: PullPolicy, *, credentials: Auths | None = None
    ) -> Image:
        image = await self._pulls.ensure(reference, policy, credentials=credentials)
        self.records.touch(image.digest)
        return image

    async def _pull(self, ref: Reference, credentials: Auths) -> Image:
        started = time.monotonic()
        # A pod's imagePullSecrets: this pull's credentials for their registries.
        client = self.client
        if credentials:
            config = dockerconfig.with_credentials(self.client.config, credentials)
            client = RegistryClient(config, platform=self.client.platform)
        try:
            async with self._gate.shared():
                image = await self._unchanged(ref, client)
                if image is not None:
                    return image
                resolved = await client.resolve(ref)
                repo, manifest = resolved.repository, resolved.manifest
                await self._fetch_all(repo, (manifest.config, *manifest.layers))
                self.content.put(resolved.digest, resolved.raw)
                image = await self._commit(
                    resolved.digest, manifest, (str(ref),), reference=str(ref), named=resolved.named
                )
        except (OCIError, LayerError, OSError) as exc:
            log.warning("image.pull_failed", image=str(ref), error=str(exc))
            raise PullError(f'failed to pull image "{ref}": {exc}') from exc
        self.pull_records.append(PullRecord(str(ref), image.digest, PullOutcome.PULLED))
        log.info(
            "image.pulled",
            image=str(ref),
            digest=image.digest,
            seconds=round(time.monotonic() - started, 3),
        )
        return image

    async def _unchanged(self, ref: Reference, client: RegistryClient) -> Image | None:
        """The image present for `ref` if the registry still names it (a HEAD, no fetch)."""
        local = self.lookup(str(ref))
        if local is None:
            return None
        named = await client.named_digest(ref)
        if named is None or named not in (local.digest, self.records.named().get(str(ref))):
            return None
        self.records.touch(local.digest)
        self.pull_records.append(PullRecord(str(ref), local.digest, PullOutcome.UNCHANGED))
        log.info("image.unchanged", image=str(ref), digest=local.digest)
        return local

    async def _fetch_all(self, repo: Repository, descs: tuple[m.Descriptor, ...]) -> None:
        """Download the blobs in parallel; when one fails, the others are cancelled (and their
        ingest files removed) before the error goes up, so nothing writes after the gate."""
        fetches = [asyncio.ensure_future(self._fetch(repo, desc)) for desc in descs]
        try:
            await asyncio.gather(*fetches)
        except BaseException:
            for fetch in fetches:
                fetch.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
            raise

    async def _fetch(self, repo: Repository, desc: m.Descriptor) -> None:
        if self.content.has(desc.digest):
            return
        async with self._downloads:
            await self.content.write(desc.digest, lambda sink: repo.get_blob(desc, sink))

    async def _commit(
        self,
        digest: str,
        manifest: m.Manifest,
        names: tuple[str, ...],
        *,
        reference: str,
        named: str = "",
    ) -> Image:
        """Unpack the image's layers, then record it: the image exists from this point on."""
        config = m.parse_config(self.content.read(manifest.config.digest))
        if len(config.diff_ids) != len(manifest.layers):
            raise OCIError(
                f"image {digest}: config lists {len(config.diff_ids)} layers, "
                f"manifest {len(manifest.layers)}"
            )
        for desc, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
            await self.layers.ensure(diff_id, self.content.path(desc.digest))
        image_config = ImageConfig(
            entrypoint=config.entrypoint,
            cmd=config.cmd,
            env=config.env,
            working_dir=config.working_dir,
            user=config.user,
            exposed_ports=config.exposed_ports,
        )
        meta = {
            "digest": digest,
            "config_digest": manifest.config.digest,
            "layers": [d.digest for d in manifest.layers],
            "diff_ids": list(config.diff_ids),
            "config": asdict(image_config),
            "labels": config.labels,
        }
        self.records.save(digest, meta)
        if names:
            await self.records.set_tags(names, digest, named=named)
        return Image(
            reference=reference,
            digest=digest,
            config=image_config,
            diff_ids=config.diff_ids,
            labels=dict(config.labels),
        )

    # -- containers -----------------------------------------------------------------------------
    def _container_dir(self, container_key: str) -> Path:
        if not container_key or "/" in container_key or container_key in (".", ".."):
            raise ImageError(f"invalid container key {container_key!r}")
        return self.containers_dir / container_key

    async def prepare(self, container_key: str, image: Image) -> list[Mount]:
        cdir = self._container_dir(container_key)
        if not image.diff_ids:
            raise ImageError(f'image "{image.reference}" has no layers: nothing to run')
        async with self._gate.shared():
            # Only gc removes records and layers, and it drops the cached records it removes.
            if self.records.record(image.digest) is None:
                raise ImageError(
                    f'image "{image.reference}" is no longer on the node '
                    "(garbage-collected); pull it again"
                )
            upper, work = cdir / "upper", cdir / "work"
            upper.mkdir(parents=True, exist_ok=True, mode=0o755)
            work.mkdir(exist_ok=True, mode=0o700)
            write_json(cdir / "image.json", {"digest": image.digest, "reference": image.reference})
            self.records.touch(image.digest)
        # Top layer first. A layer repeated in one image appears once, at its top-most place:
        # the files above its lower copy are exactly those above its upper copy.
        top_first = list(dict.fromkeys(reversed(image.diff_ids)))
        lower = ":".join(str(self.layers.path(d)) for d in top_first)
        return [
            Mount(
                type="overlay",
                source="overlay",
                target="/",
                options=(f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"),
            )
        ]

    async def release(self, container_key: str) -> None:
        cdir = self._container_dir(container_key)
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.records.touch(json.loads((cdir / "image.json").read_text())["digest"])
        for name in ("upper", "work"):
            await asyncio.to_thread(shutil.rmtree, cdir / name, True)
        (cdir / "image.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            cdir.rmdir()  # only if nothing else (the runtime's files) lives there

    def in_use(self) -> dict[str, list[str]]:
        """Image digest -> container keys using it (read from disk)."""
        used: dict[str, list[str]] = {}
        for record in self.containers_dir.glob("*/image.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                digest = json.loads(record.read_text())["digest"]
                used.setdefault(digest, []).append(record.parent.name)
        return used

    # -- listing and garbage collection ---------------------------------------------------------
    async def images(self) -> list[StoredImage]:
        return await asyncio.to_thread(self._images)

    def _images(self) -> list[StoredImage]:
        names: dict[str, list[str]] = {}
        for name, digest in sorted(self.records.tags().items()):
            names.setdefault(digest, []).append(name)
        used = self.in_use()
        return [
            StoredImage(
                digest=digest,
                names=tuple(names.get(digest, ())),
                size=sum(self._part_size(p) for p in _parts(meta)),
                last_used=self.records.last_used(digest),
                users=tuple(sorted(used.get(digest, ()))),
            )
            for digest, meta in sorted(self.records.metas().items())
        ]

    def _part_size(self, part: str) -> int:
        kind, _, digest = part.partition(":")
        return self.layers.size(digest) if kind == "layer" else self.content.size(digest)

    async def gc(self, *, bytes_to_free: int | None = None) -> list[str]:
        async with self._gate.exclusive():
            self.records.forget()  # re-read below; removed records must not stay cached
            chosen = await asyncio.to_thread(self._plan, bytes_to_free)
            for digest in chosen.remove:
                self.records.remove(digest)
            await self.records.drop_tags(set(chosen.remove))
            keep_layers = {p.partition(":")[2] for p in chosen.keep if p.startswith("layer:")}
            keep_blobs = {p.partition(":")[2] for p in chosen.keep if p.startswith("blob:")}
            for diff_id in self.layers.diff_ids() - keep_layers:
                await asyncio.to_thread(self.layers.remove, diff_id)
            for digest in self.content.digests() - keep_blobs:
                self.content.remove(digest)
        removed = list(chosen.remove)
        if removed:
            log.info("image.gc", removed=len(removed), digests=removed, freed=chosen.freed)
        return removed

    def _plan(self, bytes_to_free: int | None) -> gcplan.Plan:
        metas = self.records.metas()
        held = {
            digest: gcplan.Held(
                digest=digest,
                last_used=self.records.last_used(digest),
                parts=frozenset(_parts(meta)),
            )
            for digest, meta in metas.items()
        }
        candidates = gcplan.removable(
            held, in_use=set(self.in_use()), now=time.time(), min_age=self._gc_grace
        )
        return gcplan.plan(
            held, candidates=candidates, size=self._part_size, bytes_to_free=bytes_to_free
        )

    # -- imports --------------------------------------------------------------------------------
    async def import_archive(self, path: Path) -> list[Image]:
        """Load every image in an OCI-layout or docker-save archive, tagged by its names."""
        images = []
        async with self._gate.shared():
            archive = await asyncio.to_thread(ImageArchive, Path(path))
            try:
                for item in archive.images:
                    manifest = m.parse_manifest(item.manifest)
                    for desc in (manifest.config, *manifest.layers):
                        if not self.content.has(desc.digest):
                            await self.content.write(
                                desc.digest,
                                lambda sink, d=desc.digest: asyncio.to_thread(
                                    archive.copy_blob, d, sink
                                ),
                            )
                    self.content.put(item.digest, item.manifest)
                    reference = item.names[0] if item.names else item.digest
                    image = await self._commit(
                        item.digest, manifest, item.names, reference=reference
                    )
                    images.append(image)
                    log.info(
                        "image.imported",
                        archive=str(path),
                        names=list(item.names),
                        digest=item.digest,
                    )
            finally:
                archive.close()
        return images

    async def import_dir(self) -> list[Image]:
        """Import archives in images/import/ that are new or changed since last seen."""
        images: list[Image] = []
        for path in sorted(self.import_path.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            st = path.stat()
            signature = (st.st_size, st.st_mtime_ns)
            if self._imported.get(path) == signature:
                continue
            self._imported[path] = signature  # a broken archive is retried when it changes
            try:
                images += await self.import_archive(path)
            except (OCIError, LayerError, OSError) as exc:
                log.warning("image.import_failed", archive=str(path), error=str(exc))
        return images

    async def watch_imports(self, interval: float = 2.0) -> None:
        """Runnable: import new archives as they appear, until cancelled."""
        while True:
            await self.import_dir()
            await asyncio.sleep(interval)


def _parts(meta: dict[str, Any]) -> list[str]:
    """What an image record holds on disk (see `gcplan`): its blobs and its layers."""
    blobs = [meta["digest"], meta["config_digest"], *meta["layers"]]
    return [f"blob:{b}" for b in blobs] + [f"layer:{d}" for d in meta["diff_ids"]]

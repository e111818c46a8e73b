"""`pilothouse build`: images from a Containerfile, with a layer cache, in the CLI alone.

The builder is CLI-owned and imports neither process package: RUN steps go through its own small
runc driver (`runstep`), image formats, pulls and pushes through `pilothouse.oci`.

Vocabulary (used the same way in every module here):
- Containerfile: the build recipe (`Dockerfile` syntax); an *instruction* is one logical line of
  it (continuations and heredocs joined), with the file name and line it started on.
- stage: the instructions from one `FROM` to the next; named with `AS name`. The *target* is
  the stage whose image is the result (the last one unless `--target`).
- step: an instruction being executed against a stage's current image *state* (its layers,
  config and history). Steps that change files make a *layer*; the others change the config.
- chain key: a sha256 over the base image's digest and every step so far (for COPY/ADD the
  content hash of what is copied, never timestamps). A layer step's chain key names its entry in
  the layer cache: the same key means the same layer, so the step is not run again.
- store: the build root's OCI image layout (blobs, named images), the unpacked layer dirs used as
  overlayfs lower dirs, and the cache entries (`store.BuildStore`).

Invariants:
- Every error a person can cause is a `BuildError` whose message starts with `FILE:LINE:` when an
  instruction (or an ignore-file line) is to blame, and says what to do next.
- The same Containerfile, context and base images give the same image digest: layers are
  written with sorted entries, fixed timestamps (the epoch) and numeric owners, gzip without a
  time stamp; configs carry fixed `created` times.
"""

from __future__ import annotations


class BuildError(Exception):
    """A build failed for a reason a person can act on; the message is meant for them."""


def located(where: str, line: int, message: str) -> str:
    """`Containerfile:12: message`: how every instruction-level error starts."""
    return f"{where}:{line}: {message}" if line else f"{where}: {message}"

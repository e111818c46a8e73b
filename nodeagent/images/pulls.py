"""The pulls of one image service: the kubelet's pull policy, and one pull per reference at once.

Both ImageService implementations answer `ensure` through `Pulls`, so the policy is written
once: a name that does not parse is a `PullError` before anything else; Never never pulls
(`NotPresent`, in the kubelet's words, when the image is absent); IfNotPresent pulls only an
absent image; Always pulls every time.

Invariant: concurrent pulls of one normalized reference share one pull (one task per
reference, shielded: a caller cancelled while it waits does not cancel the pull for others).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from nodeagent.images import Image, NotPresent, PullError, PullPolicy
from pilothouse.oci.dockerconfig import Credentials
from pilothouse.oci.reference import InvalidReference, Reference, parse

Auths = Mapping[str, Credentials]  # registry host -> a pod's pull credentials


class Pulls:
    def __init__(
        self,
        *,
        lookup: Callable[[str], Image | None],
        pull: Callable[[Reference, Auths], Awaitable[Image]],
    ) -> None:
        """`lookup`: the image present for a normalized reference; `pull`: fetch it (with a
        pod's registry credentials, when it has any)."""
        self._lookup = lookup
        self._pull = pull
        self._running: dict[str, asyncio.Task[Image]] = {}

    async def ensure(
        self, reference: str, policy: PullPolicy, *, credentials: Auths | None = None
    ) -> Image:
        """The image for `reference`, present per `policy` (see the module docstring)."""
        try:
            ref = parse(reference)
        except InvalidReference as exc:
            raise PullError(f"invalid image name {reference!r}: {exc}") from exc
        local = self._lookup(str(ref))
        if policy is PullPolicy.NEVER or (policy is PullPolicy.IF_NOT_PRESENT and local):
            if local is None:
                raise NotPresent(
                    f'Container image "{reference}" is not present with pull policy of Never'
                )
            return local
        return await self._once(ref, credentials or {})

    async def _once(self, ref: Reference, credentials: Auths) -> Image:
        key = str(ref)
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._pull(ref, credentials), name=f"pull {key}")
            self._running[key] = task
            task.add_done_callback(
                lambda done: self._running.pop(key) if self._running.get(key) is done else None
            )
        return await asyncio.shield(task)

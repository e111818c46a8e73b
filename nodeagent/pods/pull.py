"""Image pulling for one pod's containers, in the kubelet's words.

Role: ensure a container's image under its pull policy before an attempt is created, and say
what happened: Pulling/Pulled events, ErrImageNeverPull, ErrImagePull then ImagePullBackOff
(with their own backoff, apart from the restart backoff), until the image is there.

Invariants:
- An image is ensured until it is there: every failure (ErrImageNeverPull included) shows in
  the container's waiting state, then waits the image backoff before the next try.
- A container in CrashLoopBackOff keeps that reason while its image is ensured again; any
  other container shows ContainerCreating.
- Pulling/"Successfully pulled" are recorded only when the registry is contacted; an image
  already present gives "already present on machine", and so does an Always whose registry
  still names the digest present (nothing was fetched).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from nodeagent import metrics
from nodeagent.images import (
    Image,
    ImageError,
    ImageService,
    NotPresent,
    PullPolicy,
    default_pull_policy,
)
from nodeagent.pods.events import EventType, PodEvents, Reason, duration_text
from nodeagent.pods.restart import Backoff, BackoffConfig
from nodeagent.pods.status import ContainerRecord, Waiting, WaitingReason
from pilothouse.oci.dockerconfig import Credentials
from pilothouse.v1 import objects_pb2

__all__ = ["ImagePuller", "default_pull_policy"]


class ImagePuller:
    """Ensures the images of one pod's containers, recording events and waiting states."""

    def __init__(
        self,
        *,
        images: ImageService,
        backoff: BackoffConfig,
        events: PodEvents,
        on_change: Callable[[], None],
        log: Any,
        credentials: Callable[[], Mapping[str, Credentials]] | None = None,
    ) -> None:
        self._images = images
        self._credentials = credentials  # the pod's imagePullSecrets, read at each pull
        self._backoff = backoff
        self._events = events
        self._on_change = on_change
        self._log = log

    async def pull(self, container: objects_pb2.Container, rec: ContainerRecord) -> Image:
        """The container's image, once present (retrying with backoff until it is)."""
        backoff = Backoff(self._backoff)
        policy = (
            PullPolicy(container.image_pull_policy)
            if container.image_pull_policy
            else default_pull_policy(container.image)
        )
        if not isinstance(rec.state, Waiting) or rec.state.reason not in (
            WaitingReason.CRASH_LOOP_BACK_OFF,
        ):
            rec.state = Waiting(WaitingReason.CONTAINER_CREATING)
            self._on_change()
        name, image = container.name, container.image
        while True:
            pulls = self.pulls(image, policy)
            present = self._present(image) if policy is PullPolicy.ALWAYS else None
            if pulls:
                self._event(name, Reason.PULLING, f'Pulling image "{image}"')
            began = time.monotonic()
            try:
                auths = self._credentials() if self._credentials is not None else None
                found = await self._images.ensure(image, policy, credentials=auths)
            except NotPresent as exc:
                rec.state = Waiting(WaitingReason.ERR_IMAGE_NEVER_PULL, str(exc))
                self._event(name, Reason.ERR_IMAGE_NEVER_PULL, str(exc), EventType.WARNING)
                self._on_change()
            except ImageError as exc:
                metrics.image_pull(ok=False)
                self._log.warning("pod.image_pull_failed", image=image, error=str(exc))
                rec.state = Waiting(WaitingReason.ERR_IMAGE_PULL, str(exc))
                failed = f'Failed to pull image "{image}": {exc}'
                self._event(name, Reason.FAILED, failed, EventType.WARNING)
                self._event(name, Reason.FAILED, "Error: ErrImagePull", EventType.WARNING)
                self._on_change()
                delay = backoff.next()
                rec.state = Waiting(
                    WaitingReason.IMAGE_PULL_BACK_OFF,
                    f'Back-off pulling image "{image}": {exc}',
                )
                self._event(name, Reason.BACK_OFF, f'Back-off pulling image "{image}"')
                self._event(name, Reason.FAILED, "Error: ImagePullBackOff", EventType.WARNING)
                self._on_change()
                await asyncio.sleep(delay)
                continue
            else:
                if present is not None and present == found.digest:
                    message = (
                        f'Container image "{image}" already present on machine and unchanged '
                        f"in the registry ({found.digest})"
                    )
                elif pulls:
                    took = duration_text(time.monotonic() - began)
                    message = f'Successfully pulled image "{image}" in {took}'
                else:
                    message = f'Container image "{image}" already present on machine'
                self._event(name, Reason.PULLED, message)
                metrics.image_pull(ok=True, seconds=time.monotonic() - began if pulls else None)
                return found
            await asyncio.sleep(backoff.next())

    def pulls(self, image: str, policy: PullPolicy) -> bool:
        """Whether ensuring `image` under `policy` contacts the registry (for the events).

        IfNotPresent asks the image service's `lookup`.
        """
        if policy is PullPolicy.NEVER:
            return False
        if policy is PullPolicy.ALWAYS:
            return True
        try:
            return self._images.lookup(image) is None
        except Exception:  # an unparseable name: ensure() reports it as a pull error
            return True

    def _present(self, image: str) -> str | None:
        """The digest of the image present for `image` before asking the registry, if any."""
        try:
            found = self._images.lookup(image)
        except Exception:  # an unparseable name: ensure() reports it as a pull error
            return None
        return found.digest if found is not None else None

    def _event(
        self,
        container: str,
        reason: Reason,
        message: str,
        type: EventType = EventType.NORMAL,
    ) -> None:
        self._events.record(container=container, type=type, reason=reason, message=message)

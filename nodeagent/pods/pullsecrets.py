"""A pod's imagePullSecrets as registry credentials for its pulls (`pilothouse.oci.dockerconfig`).

Each listed Secret of the pod's namespace, as the node was last pushed it, is read as a
`kubernetes.io/dockerconfigjson` (`.dockerconfigjson`) or `kubernetes.io/dockercfg`
(`.dockercfg`) payload; later secrets do not override a host an earlier one named. A listed
Secret the node does not have is reported once (the kubelet's FailedToRetrieveImagePullSecret
warning) and the pull goes on without it, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Callable

from nodeagent.pods.configs import ConfigError, Configs
from nodeagent.pods.events import EventType, PodEvents, Reason
from pilothouse.oci import dockerconfig
from pilothouse.oci.dockerconfig import Credentials
from pilothouse.v1 import objects_pb2


class PullSecrets:
    def __init__(
        self, *, pod: objects_pb2.Pod, configs: Callable[[], Configs], events: PodEvents
    ) -> None:
        self._pod = pod
        self._configs = configs
        self._events = events
        self._reported: set[str] = set()

    def __call__(self) -> dict[str, Credentials]:
        namespace = self._pod.metadata.namespace or "default"
        found: dict[str, Credentials] = {}
        missing = []
        for ref in self._pod.spec.image_pull_secrets:
            try:
                secret = self._configs().secret(namespace, ref.name)
            except ConfigError:
                missing.append(ref.name)
                continue
            for key, legacy in ((".dockerconfigjson", False), (".dockercfg", True)):
                if key in secret.data:
                    for host, creds in dockerconfig.credentials(
                        secret.data[key], legacy=legacy
                    ).items():
                        found.setdefault(host, creds)
        new = [name for name in missing if name not in self._reported]
        if new:
            self._reported.update(new)
            self._events.record(
                type=EventType.WARNING,
                reason=Reason.FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET,
                message=f"Unable to retrieve some image pull secrets ({', '.join(new)}); "
                "attempting to pull the image may not succeed.",
            )
        return found

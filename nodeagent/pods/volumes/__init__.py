"""Pod volumes on the node: made before the pod's containers, kept current, removed with it.

Vocabulary:
- volume directory: where a volume lives on the node, `<pod dir>/volumes/<plugin>/<name>`
  (the kubelet's plugin names: `kubernetes.io~empty-dir`, `~configmap`, `~secret`,
  `~downward-api`, `~projected`); a hostPath volume is its own path, a persistentVolumeClaim
  the node path its claim resolved to;
- payload: the files of a configMap, secret, downwardAPI or projected volume (`sources`),
  written by `atomic` the kubelet's way: a `..<timestamp>` directory, a `..data` symlink to
  it swapped in one rename, and a symlink per top-level name through `..data`, so a reader
  sees the old files or the new ones, never a mix;
- mount: a `runtime.Mount` binding a volume directory (or a `subPath` inside it) at a
  container path (`mounts`).

Modules: `sources` (payloads, pure), `atomic` (the atomic writer), `host` (the node's side:
tmpfs, hostPath type checks, ownership, removal), `mounts` (container mounts, subPath), `pod`
(`PodVolumes`: one pod's volumes, used by its worker).

Invariants:
- Secret, configMap, downwardAPI, projected and `medium: Memory` volumes are memory-backed
  (tmpfs) where the node mounts (`VolumeHost(tmpfs=True)`, the runc runtime): a Secret's value
  is written on the node only to memory;
- a payload update swaps `..data` atomically; a `subPath` mount binds the file or directory
  as it was when the container started, so it does not change (as in Kubernetes);
- everything under the pod's `volumes/` directory is unmounted and removed with the pod, also
  for a pod known only by its directory (an orphan after an agent restart).

Plugging in another source (persistentVolumeClaim): `PodVolumes` asks its `resolvers` (volume
source field name -> function of (pod, volume) returning the node directory, or raising
`VolumeError`) for any source it does not make itself; the claim's resolver returns the path the
scheduler recorded for it, and the volume is then mounted like a hostPath directory.
"""

from nodeagent.pods.volumes.host import VolumeHost
from nodeagent.pods.volumes.pod import PodVolumes, Resolver, VolumeError

__all__ = ["PodVolumes", "Resolver", "VolumeError", "VolumeHost"]

"""Where a local cluster keeps everything: one data dir, named paths inside it.

    <data-dir>/up.pid                 the supervisor (`pilothouse up`): "PID START_TIME"
    <data-dir>/cluster.json           addresses, written once the cluster is ready
    <data-dir>/up.log                 the supervisor's log when detached (kept after `down`)
    <data-dir>/pids/<child>.pid       each supervised child's current run
    <data-dir>/logs/<child>.log       each child's stdout and stderr
    <data-dir>/registry/              docker-registry's config and storage
    <data-dir>/images/busybox.tar     the test image pushed to the registry
    <data-dir>/controlplane/          the control plane's data dir (embedded etcd)
    <data-dir>/controlplanes/cp-N/    each member's, with `up --control-planes N` (N > 1)
    <data-dir>/nodes/<node>/          one agent's state dir, and its registries.yaml
    <data-dir>/storage/               local-path volumes of every node (the control plane's
                                      --local-path-dir; the nodes share the machine)

Invariants: every path the cluster writes is derived here from the data dir, so `down` finds
everything from the data dir alone; the cgroup parent is unique per data dir, so two local
clusters on one machine never touch each other's cgroups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pilothouse.cli.cluster import flags, netns

ROOT_DATA_DIR = Path(flags.ROOT_DATA_DIR)
CGROUP_ROOT = "/pilothouse-local"


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return ROOT_DATA_DIR
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pilothouse" / "local"


@dataclass(frozen=True, slots=True)
class Layout:
    data_dir: Path

    @classmethod
    def at(cls, data_dir: Path | None) -> Layout:
        return cls((data_dir or default_data_dir()).expanduser().resolve())

    @property
    def up_pid(self) -> Path:
        return self.data_dir / "up.pid"

    @property
    def cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def keeper_file(self) -> Path:
        """The children's specs and runs, from `up` to its keeper and back (`keeper`)."""
        return self.data_dir / "keeper.json"

    @property
    def up_log(self) -> Path:
        return self.data_dir / "up.log"

    @property
    def pids(self) -> Path:
        return self.data_dir / "pids"

    def log(self, child: str) -> Path:
        return self.data_dir / "logs" / f"{child}.log"

    @property
    def registry(self) -> Path:
        return self.data_dir / "registry"

    @property
    def test_image(self) -> Path:
        return self.data_dir / "images" / "busybox.tar"

    @property
    def controlplane(self) -> Path:
        return self.data_dir / "controlplane"

    @property
    def nodes(self) -> Path:
        return self.data_dir / "nodes"

    def node(self, name: str) -> Path:
        return self.nodes / name

    @property
    def storage(self) -> Path:
        """Where the built-in local-path provisioner makes volumes (`--local-path-dir`)."""
        return self.data_dir / "storage"

    @property
    def controlplanes(self) -> Path:
        return self.data_dir / "controlplanes"

    def controlplane_member(self, name: str) -> Path:
        return self.controlplanes / name

    @property
    def cluster_id(self) -> str:
        """The cluster's name: lowercase letters and digits, derived from the data dir (the
        same one `netns` names network namespaces by)."""
        return netns.cluster_name(self.data_dir)

    @property
    def cgroup_parent(self) -> str:
        """The cgroup under which every node's pods run: `<root>/<cluster id>`."""
        return f"{CGROUP_ROOT}/{self.cluster_id}"

    def node_cgroup_parent(self, node: str) -> str:
        return f"{self.cgroup_parent}/{node}"

    def made(self) -> list[Path]:
        """Everything `up` creates in the data dir, which `down` removes (not the log)."""
        return [
            self.cluster_file,
            self.pids,
            self.data_dir / "logs",
            self.registry,
            self.data_dir / "images",
            self.controlplane,
            self.controlplanes,
            self.nodes,
            self.storage,
            self.up_pid,
            self.keeper_file,
        ]

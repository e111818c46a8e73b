"""What a running local cluster serves where (`ClusterInfo`), kept in `<data-dir>/cluster.json`.

Invariants: written once the cluster is ready (a detached `up` waits for it), atomically;
read by `down` after a crash to take back the CLI config exactly as `up` set it; a file from
an older `up` without the newer fields still reads (they default to the old behaviour).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pilothouse.cli.cluster.layout import Layout


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    data_dir: str
    pid: int
    controlplane: str
    registry: str
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> agent address
    client_config: str = ""
    network: str = "host"  # hosts.Placement's value
    pod_cidrs: dict[str, str] = field(default_factory=dict)  # node name -> pod CIDR
    secure: bool = False
    client_settings: dict[str, str] = field(default_factory=dict)  # credential keys `up` set
    # With several control-plane members: member name -> its API address (data dir
    # <data-dir>/controlplanes/<name>, child <name>); empty with one.
    controlplanes: dict[str, str] = field(default_factory=dict)
    # The control plane's web dashboard (issue 16), "" when it serves none.
    dashboard: str = ""
    # The CLI's registries.yaml with the registry's account ("" from an older `up`).
    registry_config: str = ""

    @classmethod
    def read(cls, layout: Layout) -> ClusterInfo | None:
        try:
            return cls(**json.loads(layout.cluster_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, layout: Layout) -> None:
        temporary = layout.cluster_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(layout.cluster_file)

    def describe(self) -> str:
        width = max(len("control plane"), *(len(n) for n in self.nodes))
        mode = "mutual TLS" if self.secure else "plaintext, no authentication"
        lines = [f"{'control plane':<{width}}  {self.controlplane} ({mode})"]
        if self.controlplanes:
            lines[0] = f"{'control plane':<{width}}  {len(self.controlplanes)} members ({mode})"
            lines += [f"{name:<{width}}  {address}" for name, address in self.controlplanes.items()]
        lines.append(f"{'registry':<{width}}  {self.registry} (mirror of docker.io)")
        if self.registry_config:
            lines.append(
                f"{'':<{width}}  push with: pilothouse build --registries "
                f"{self.registry_config} --push -t {self.registry}/NAME:TAG DIR"
            )
        for name, address in self.nodes.items():
            cidr = self.pod_cidrs.get(name)
            lines.append(f"{name:<{width}}  {address}" + (f"  pods {cidr}" if cidr else ""))
        if self.network == "netns":
            lines.append("nodes: a network namespace each (ph-<cluster>-<node>), on one bridge")
            first = next(iter(self.nodes.values()), "").rpartition(":")[0]
            if first:
                lines.append(
                    "NodePorts: from this machine at any node's address, e.g. "
                    f"curl http://{first}:<nodePort>/ (get svc shows the nodePort)"
                )
        if self.client_config:
            lines.append(f"client config: {self.client_config} (server: {self.controlplane})")
        if self.dashboard:
            token = Path(self.data_dir) / "controlplane" / "dashboard-token"
            shown = token.read_text().strip() if token.exists() else "<see " + str(token) + ">"
            lines.append(f"dashboard: {self.dashboard}?token={shown}")
        return "\n".join(lines)

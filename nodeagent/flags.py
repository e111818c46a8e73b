"""The node agent's command-line flags: names, defaults and help, as `argparse` declares them.

Role: the declaration half of the agent's settings; `nodeagent.config.parse` checks the
values and turns them into a `Config` (its docstring explains each default). Nothing here
validates beyond what argparse's `type` and `choices` do.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:7071"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilothouse agent",
        description="Run a Pilothouse node agent: pods as runc containers, served over gRPC.",
    )
    p.add_argument("--name", default=socket.gethostname(), help="node name (default: hostname)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="gRPC address HOST:PORT")
    p.add_argument("--state-dir", type=Path, default=None, help="agent state directory")
    p.add_argument("--runtime", choices=("runc", "fake"), default="runc")
    p.add_argument("--pids-limit", type=int, default=1024, help="pids limit per container")
    p.add_argument("--max-pods", type=int, default=110, help="pods this node accepts")
    p.add_argument(
        "--cpu",
        default="",
        metavar="QUANTITY",
        help="cpu capacity to report, e.g. 2 or 1500m (default: the machine's cpus)",
    )
    p.add_argument(
        "--memory",
        default="",
        metavar="QUANTITY",
        help="memory capacity to report, e.g. 4Gi (default: the machine's memory)",
    )
    p.add_argument("--registries", type=Path, default=None, help="registries config (YAML)")
    p.add_argument("--node-ip", default="127.0.0.1", help="address reported as the pod hostIP")
    p.add_argument(
        "--cgroup-parent", default="/pilothouse", help="cgroup under which pods run (absolute)"
    )
    p.add_argument(
        "--server",
        default="",
        metavar="HOST:PORT[,HOST:PORT...]",
        help="control plane API address to register with, or the addresses of several "
        "control-plane members (default: standalone, no control plane)",
    )
    p.add_argument(
        "--token",
        default="",
        metavar="-",
        help="read the bootstrap token for the first join from standard input (`-`); a token "
        "value here is refused: every user can read command lines",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="file holding the bootstrap token for the first join (mode 0600; `pilothouse "
        "token create` prints one)",
    )
    p.add_argument(
        "--ca-cert-hash",
        default="",
        metavar="sha256:HEX",
        help="the control plane's CA hash; the join is refused if the CA presented differs",
    )
    p.add_argument(
        "--join-server",
        default="",
        metavar="HOST:PORT",
        help="the control plane's join port (default: the --server port + 1)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="DEVELOPMENT ONLY: plaintext and no authentication with --server (for a control "
        "plane run with --insecure); anyone who can reach the agent controls its containers",
    )
    p.add_argument("--backoff-initial", type=float, default=1.0, help="first restart delay, s")
    p.add_argument("--backoff-max", type=float, default=60.0, help="longest restart delay, s")
    p.add_argument(
        "--backoff-reset-after", type=float, default=600.0, help="run time that resets backoff, s"
    )
    p.add_argument("--backoff-jitter", type=float, default=0.1, help="jitter fraction")
    p.add_argument(
        "--network",
        choices=("none", "host", "cni"),
        default="none",
        help="pod network: none (loopback only), host (the node's), cni (an IP per pod)",
    )
    p.add_argument(
        "--pod-cidr",
        default="",
        metavar="CIDR",
        help="this node's pod CIDR, e.g. 10.244.1.0/24, asked of the control plane (default "
        "with --server: the block it allocates; needed by --network cni without --server)",
    )
    p.add_argument(
        "--pod-routes",
        choices=("auto", "host-gw", "vxlan", "none"),
        default="auto",
        help="how this node routes to the other nodes' pods (from the node list the control "
        "plane pushes): auto (host-gw on a shared link, VXLAN otherwise), host-gw, vxlan, none",
    )
    p.add_argument("--cni-plugin-dir", type=Path, default=Path("/usr/lib/cni"))
    p.add_argument(
        "--resolv-conf",
        type=Path,
        default=Path("/etc/resolv.conf"),
        metavar="FILE",
        help="the node's resolvers: where its DNS forwards names outside the cluster, and what "
        "pods with dnsPolicy Default get (default %(default)s)",
    )
    p.add_argument(
        "--allow-probe-host",
        action="store_true",
        help="let probes connect to a host outside their pod (an admin's decision: a probe "
        "host can reach whatever the pod's network reaches)",
    )
    p.add_argument(
        "--allow-unconfined-seccomp",
        action="store_true",
        help="let containers run without the default seccomp profile when they ask for "
        "seccompProfile: Unconfined",
    )
    p.add_argument(
        "--allow-privileged",
        action="store_true",
        help="let containers run privileged (securityContext.privileged: every capability and "
        "the node's devices)",
    )
    p.add_argument(
        "--eviction-hard",
        default="nodefs.available<10%",
        metavar="SIGNAL<VALUE",
        help="evict pods (and report DiskPressure) when the state dir's file system has less "
        "available, e.g. nodefs.available<10%% or nodefs.available<2Gi",
    )
    p.add_argument(
        "--eviction-interval", type=float, default=10.0, help="how often usage is measured, s"
    )
    p.add_argument(
        "--eviction-pressure-transition-period",
        type=float,
        default=30.0,
        help="how long DiskPressure stays after the last pass below the threshold, s",
    )
    p.add_argument(
        "--usage-interval",
        type=float,
        default=10.0,
        help="how often the pods' CPU, memory and network use is sampled (top, autoscaling), s",
    )
    p.add_argument(
        "--metrics-listen",
        default="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on this address (off by default; a wildcard or public "
        "address needs --metrics-public)",
    )
    p.add_argument(
        "--metrics-public",
        action="store_true",
        help="allow --metrics-listen on a wildcard or public address (no authentication)",
    )
    p.add_argument("--debug", action="store_true", help="debug logging")
    return p

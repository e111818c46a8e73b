"""The node agent's settings: command-line flags and their defaults.

The flags themselves (names, defaults, help) are declared in `nodeagent.flags`; this module
checks and converts them into one `Config`.

Defaults:
- `--name`: the host name. `--listen 127.0.0.1:7071` (port 0 picks a free port; the address
  actually bound is written to `<state-dir>/agent.addr` once the agent serves).
- `--state-dir /var/lib/pilothouse/agent` as root, else ~/.local/share/pilothouse/agent:
  holds the desired set, the runtime's and the image store's state, and pod logs.
- `--runtime runc` (`fake`: in-memory containers, for hollow nodes), `--pids-limit 1024`,
  `--max-pods 110` (Kubernetes' default), restart backoff 1 s doubling to 60 s, reset after
  10 min of running, ±10 % jitter.
- Capacity: the machine's cpus and memory, unless `--cpu 2` / `--memory 4Gi` (Kubernetes
  quantities) say otherwise; the node then reports that as its capacity and allocatable
  (to reserve part of a machine, or to make a hollow node of any size).
- Pod network (`--network`): `none` (loopback only, the default), `host`, or `cni` (an address
  per pod from the node's pod CIDR). The pod CIDR is `--pod-cidr`, which the agent asks the
  control plane for at registration; with `--server` and no `--pod-cidr` it is the block the
  control plane allocates (remembered in `<state-dir>/pod-cidr`, so a restarted agent asks for
  the same one). A standalone `--network cni` agent needs `--pod-cidr`. In cni mode the agent
  routes to the other nodes' pods itself, from the node list the control plane pushes with the
  pods (`--pod-routes`, default auto: host-gw on a shared link, VXLAN otherwise).
- `--server HOST:PORT`: the control plane to register with and heartbeat. Secure by default
  (issue #7): the first start joins with a bootstrap token and `--ca-cert-hash sha256:…` (both
  printed by `pilothouse token create --print-join-command`) at `--join-server` (default: the
  server's port + 1), verifying the control plane's CA by that hash before trusting anything;
  the node certificate, its key and the CA are kept in `<state-dir>/pki/`, so later starts need
  no token. The token never goes on a command line, where every user of the machine can read
  it (`ps`, /proc/*/cmdline): `--token-file PATH` (a file only root can read, mode 0600; read
  when the node joins, so it may be gone once it has) or `--token -` (one line on standard
  input). `--token VALUE` is refused with a pointer to both. Registration and heartbeats then
  use mutual TLS, and the agent's own gRPC server requires TLS with a client certificate of
  the control plane's identity.
- Administrators' decisions, off by default (issue 11): `--allow-probe-host` lets probes
  connect to a `host` outside their pod (still from the pod's network namespace), and
  `--allow-unconfined-seccomp` lets containers ask for `seccompProfile: Unconfined` (every
  other container runs under Docker's default seccomp profile). The control plane has flags of
  the same names for what it accepts at apply; set both alike.
- Local storage (issue 11): `--eviction-hard nodefs.available<10%` (the kubelet's default; or
  an absolute quantity) is where the node reports DiskPressure and starts evicting pods;
  usage and limits are checked every `--eviction-interval` seconds (10), and DiskPressure
  stays for `--eviction-pressure-transition-period` seconds (30) after the last pass below.
- Without `--server` the agent is standalone (issue #3: driven directly over gRPC) and serves
  plaintext. `--insecure` with `--server` registers and serves in plaintext, for a control
  plane run with `--insecure`: development only.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.flags import parser
from nodeagent.pods.eviction import Threshold
from nodeagent.pods.restart import BackoffConfig
from pilothouse import pki, quantity

ADDRESS_FILE = "agent.addr"
PKI_DIR = "pki"


class ConfigError(ValueError):
    """A flag with a value the agent cannot use."""


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    listen: str
    state_dir: Path
    runtime: str
    pids_limit: int
    max_pods: int
    registries: Path | None
    node_ip: str
    cgroup_parent: str
    server: str
    backoff: BackoffConfig
    debug: bool
    network: str = "none"  # none | host | cni (nodeagent.network.sandbox.Mode)
    token: str = ""  # read from standard input (--token -)
    token_file: Path | None = None  # --token-file: read when the node joins
    ca_cert_hash: str = ""
    join_server: str = ""  # where to join; default: the server's port + 1
    insecure: bool = False
    pod_cidr: str = ""
    # How the other nodes' pods are reached in cni mode (nodeagent.network.routes.RouteMode):
    # auto (host-gw on a shared link, else VXLAN), host-gw, vxlan, none.
    pod_routes: str = "auto"
    cni_plugin_dir: Path = Path("/usr/lib/cni")
    # The node's resolvers: DNS forwards names outside the cluster to them, and pods with
    # dnsPolicy Default get them (the kubelet's --resolv-conf).
    resolv_conf: Path = Path("/etc/resolv.conf")
    cpu_millis: int | None = None  # --cpu: capacity override, None: the machine's
    memory_bytes: int | None = None  # --memory: capacity override, None: the machine's
    allow_probe_host: bool = False  # --allow-probe-host
    allow_unconfined_seccomp: bool = False  # --allow-unconfined-seccomp
    allow_privileged: bool = False  # --allow-privileged
    eviction_hard: Threshold = field(default_factory=Threshold)  # nodefs.available<10%
    eviction_interval: float = 10.0
    eviction_transition: float = 30.0
    usage_interval: float = 10.0  # --usage-interval: how often pods' usage is sampled, s
    metrics_listen: str = ""  # --metrics-listen HOST:PORT: Prometheus metrics ("": off)

    @property
    def address_file(self) -> Path:
        return self.state_dir / ADDRESS_FILE

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / PKI_DIR

    @property
    def secure(self) -> bool:
        """Whether the agent joins the cluster and speaks mutual TLS."""
        return bool(self.server) and not self.insecure


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pilothouse/agent")
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pilothouse" / "agent"


def parse(argv: Sequence[str]) -> Config:
    args = parser().parse_args(list(argv))
    if args.pids_limit < 1:
        raise ConfigError(f"--pids-limit must be at least 1, got {args.pids_limit}")
    if args.max_pods < 1:
        raise ConfigError(f"--max-pods must be at least 1, got {args.max_pods}")
    if not args.cgroup_parent.startswith("/"):
        raise ConfigError(f"--cgroup-parent must be absolute, got {args.cgroup_parent!r}")
    if ":" not in args.listen:
        raise ConfigError(f"--listen must be HOST:PORT, got {args.listen!r}")
    try:
        backoff = BackoffConfig(
            initial=args.backoff_initial,
            maximum=args.backoff_max,
            reset_after=args.backoff_reset_after,
            jitter=args.backoff_jitter,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.network == "cni" and not args.pod_cidr and not args.server:
        raise ConfigError(
            "--network cni needs --pod-cidr (e.g. 10.244.1.0/24), or --server to get one "
            "from the control plane"
        )
    if args.pod_cidr:
        args.pod_cidr = _pod_cidr(args.pod_cidr)
    cpu_millis = _capacity("--cpu", args.cpu, quantity.parse_cpu)
    memory_bytes = _capacity("--memory", args.memory, quantity.parse_memory)
    if args.server and ":" not in args.server:
        raise ConfigError(f"--server must be HOST:PORT, got {args.server!r}")
    if args.token and args.token != "-":
        raise ConfigError(
            "--token with the token itself puts it where every user of this machine can read "
            "it (ps, /proc/*/cmdline); write it to a file only root can read (umask 077) and "
            "pass --token-file FILE, or pass it on standard input with --token -"
        )
    if args.token and args.token_file is not None:
        raise ConfigError("--token - and --token-file both give the token: pass one")
    given_token = bool(args.token) or args.token_file is not None
    if (given_token or args.ca_cert_hash or args.join_server) and not args.server:
        raise ConfigError("--token, --token-file, --ca-cert-hash and --join-server need --server")
    if args.insecure and (given_token or args.ca_cert_hash):
        raise ConfigError(
            "--insecure joins nothing: drop --token/--token-file/--ca-cert-hash or --insecure"
        )
    if given_token and not args.ca_cert_hash:
        raise ConfigError(
            "a join token needs --ca-cert-hash sha256:… to verify the control plane "
            "(`pilothouse token create --print-join-command` prints both)"
        )
    if args.ca_cert_hash:
        try:
            pki.check_hash_format(args.ca_cert_hash)
        except pki.PkiError as exc:
            raise ConfigError(str(exc)) from None
    if args.server and not args.insecure:
        try:
            pki.check_node_name(args.name)
        except pki.PkiError as exc:
            raise ConfigError(f"--name: {exc}") from None
    if args.registries is not None and not args.registries.is_file():
        raise ConfigError(f"--registries {args.registries}: no such file")
    return Config(
        name=args.name,
        listen=args.listen,
        state_dir=(args.state_dir or default_state_dir()).resolve(),
        runtime=args.runtime,
        pids_limit=args.pids_limit,
        max_pods=args.max_pods,
        registries=args.registries,
        node_ip=args.node_ip,
        cgroup_parent=args.cgroup_parent,
        server=args.server,
        backoff=backoff,
        debug=args.debug,
        network=args.network,
        pod_cidr=args.pod_cidr,
        pod_routes=args.pod_routes,
        cni_plugin_dir=args.cni_plugin_dir,
        resolv_conf=args.resolv_conf,
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        token=_stdin_token() if args.token == "-" else "",
        token_file=args.token_file.expanduser().resolve() if args.token_file else None,
        ca_cert_hash=args.ca_cert_hash.strip(),
        join_server=args.join_server or (join_server_for(args.server) if args.server else ""),
        insecure=args.insecure,
        allow_probe_host=args.allow_probe_host,
        allow_unconfined_seccomp=args.allow_unconfined_seccomp,
        allow_privileged=args.allow_privileged,
        eviction_hard=_threshold(args.eviction_hard),
        eviction_interval=_positive("--eviction-interval", args.eviction_interval),
        eviction_transition=max(args.eviction_pressure_transition_period, 0.0),
        usage_interval=_positive("--usage-interval", args.usage_interval),
        metrics_listen=_metrics_listen(args.metrics_listen, public=args.metrics_public),
    )


def _metrics_listen(listen: str, *, public: bool) -> str:
    from pilothouse.process import metricserver

    try:
        return metricserver.check_listen(listen, public=public)
    except ValueError as exc:
        raise ConfigError(f"--metrics-listen: {exc}") from None


def _threshold(text: str) -> Threshold:
    try:
        return Threshold.parse(text)
    except (ValueError, quantity.QuantityError) as exc:
        raise ConfigError(f"--eviction-hard: {exc}") from None


def _positive(flag: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{flag} must be more than zero, got {value}")
    return value


def _stdin_token() -> str:
    """The token on standard input (its first line), for `--token -`."""
    line = sys.stdin.readline().strip()
    if not line:
        raise ConfigError("--token -: standard input held no token (one line: <id>.<secret>)")
    return line


def _pod_cidr(text: str) -> str:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ConfigError(
            f"--pod-cidr {text}: {exc} (expected a network such as 10.244.1.0/24)"
        ) from None
    if network.version != 4:
        raise ConfigError(f"--pod-cidr {text}: pod networks are IPv4 only")
    return str(network)


def _capacity(flag: str, text: str, parse: Callable[[str], int]) -> int | None:
    """A capacity override in Kubernetes notation, or None when the flag is not given."""
    if not text:
        return None
    try:
        value = parse(text.strip())
    except quantity.QuantityError as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    if value <= 0:
        raise ConfigError(f"{flag} must be more than zero, got {text!r}")
    return value


def join_server_for(server: str) -> str:
    """The control plane's default join port: its API port + 1 on the same host (for each
    member of "a:7070,b:7070")."""
    joins = []
    for member in server.split(","):
        host, _, port = member.strip().rpartition(":")
        joins.append(f"{host}:{int(port) + 1}" if port.isdigit() else member.strip())
    return ",".join(joins)

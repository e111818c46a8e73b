"""From a pod's container and its image to a `ContainerSpec`: pure, Kubernetes semantics.

Rules (as the kubelet applies them):
- `command` replaces the image ENTRYPOINT, `args` replaces its CMD; `command` alone drops CMD.
- env: the image's, then the pod's, a later name overriding an earlier one; `$(VAR)` in env
  values, command and args expands to an earlier variable (`$$` escapes), unknown ones stay.
- workingDir: the pod's, else the image's, else "/". User: the image's (uid[:gid] or names
  looked up in the image's /etc/passwd and /etc/group), else root.
- hostname = spec.hostname or the pod name, cut to 63 characters; resources from the
  limits/requests (a cpu request defaults to its limit).

Invariants: a container's labels record who it belongs to (`LABEL_*`), so a restarted agent can
re-adopt it from `runtime.list()` alone; container ids are
"<namespace>_<pod>_<container>_<attempt>" where attempt = restart count.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from nodeagent.images import Image
from nodeagent.pods.envsources import ResolvedEnv
from nodeagent.runtime import ContainerSpec, Mount, Resources
from pilothouse import quantity
from pilothouse.manifests import names
from pilothouse.v1 import objects_pb2

LABEL_NAMESPACE = "pilothouse.pod.namespace"
LABEL_POD = "pilothouse.pod.name"
LABEL_UID = "pilothouse.pod.uid"
LABEL_SPEC_HASH = "pilothouse.pod.spec-hash"
LABEL_CONTAINER = "pilothouse.container.name"
LABEL_ATTEMPT = "pilothouse.container.restart-count"
LABEL_IMAGE_ID = "pilothouse.container.image-id"
OWN_LABELS = (
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_UID,
    LABEL_SPEC_HASH,
    LABEL_CONTAINER,
    LABEL_ATTEMPT,
    LABEL_IMAGE_ID,
)

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SpecError(Exception):
    """The pod and image do not make a runnable container (CreateContainerConfigError)."""


def pod_key(pod: objects_pb2.Pod) -> str:
    return f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"


def spec_hash(pod: objects_pb2.Pod) -> str:
    """Changes whenever the pod would run differently; not for node binding or status."""
    spec = objects_pb2.PodSpec()
    spec.CopyFrom(pod.spec)
    spec.node_name = ""
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()[:16]


def container_id(pod: objects_pb2.Pod, container: str, attempt: int) -> str:
    ns = pod.metadata.namespace or "default"
    return f"{ns}_{pod.metadata.name}_{container}_{attempt}"


def hostname(pod: objects_pb2.Pod) -> str:
    """The pod's hostname: spec.hostname, else its name, cut to 63 characters (the kubelet's
    rule: a 77-character pod name would fail `sethostname`)."""
    return names.hostname(pod.spec.hostname or pod.metadata.name)


def pod_dir(state_dir: Path, pod: objects_pb2.Pod) -> Path:
    m = pod.metadata
    return Path(state_dir) / "pods" / f"{m.namespace or 'default'}_{m.name}_{m.uid}"


def log_path(state_dir: Path, pod: objects_pb2.Pod, container: str, attempt: int) -> Path:
    return pod_dir(state_dir, pod) / container / f"{attempt}.log"


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known variables expand, `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, value)


def process_args(container: objects_pb2.Container, image: Image) -> tuple[str, ...]:
    cfg = image.config
    if container.command:
        args = [*container.command, *container.args]
    elif container.args:
        args = [*cfg.entrypoint, *container.args]
    else:
        args = [*cfg.entrypoint, *cfg.cmd]
    if not args:
        raise SpecError(
            f'container "{container.name}": no command given and image "{image.reference}" '
            "has neither ENTRYPOINT nor CMD"
        )
    return tuple(args)


def environment(
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    image: Image,
    sources: ResolvedEnv | None = None,
) -> dict[str, str]:
    """The container's environment: the image's, HOSTNAME, then `sources` (envFrom and env
    as `pods.envsources` resolved them; without: `env` values alone). Only plain `value`s
    are $(VAR)-expanded."""
    env: dict[str, str] = {}
    for item in (DEFAULT_PATH, *image.config.env):
        name, _, value = item.partition("=")
        env[name] = value
    env["HOSTNAME"] = pod.metadata.name
    if sources is None:
        for var in container.env:
            env[var.name] = expand(var.value, env)
        return env
    for name, source in sources.items:
        env[name] = source.value if source.literal else expand(source.value, env)
    return env


def secret_names(sources: ResolvedEnv | None) -> frozenset[str]:
    """The variables whose final value came from a Secret (a later plain one overrides)."""
    last: dict[str, bool] = {}
    for name, source in sources.items if sources is not None else ():
        last[name] = source.secret
    return frozenset(name for name, secret in last.items() if secret)


def resources(container: objects_pb2.Container, *, pids_limit: int) -> Resources:
    limits = container.resources.limits
    requests = container.resources.requests
    try:
        mem = quantity.parse_memory(limits["memory"]) if "memory" in limits else None
        cpu_limit = quantity.parse_cpu(limits["cpu"]) if "cpu" in limits else None
        cpu_request = quantity.parse_cpu(requests["cpu"]) if "cpu" in requests else cpu_limit
    except quantity.QuantityError as exc:
        raise SpecError(f'container "{container.name}": {exc}') from exc
    return Resources(
        memory_limit_bytes=mem,
        cpu_limit_millis=cpu_limit,
        cpu_request_millis=cpu_request,
        pids_limit=pids_limit,
    )


def _layer_dirs(mounts: list[Mount]) -> list[Path]:
    """The directories of an overlay rootfs, top first (upper, then lowers)."""
    dirs: list[Path] = []
    for m in mounts:
        opts = dict(o.partition("=")[::2] for o in m.options)
        if m.type == "overlay":
            if opts.get("upperdir"):
                dirs.append(Path(opts["upperdir"]))
            dirs.extend(Path(d) for d in opts.get("lowerdir", "").split(":") if d)
        elif m.type == "bind" and m.target == "/":
            dirs.append(Path(m.source))
    return dirs


def _lookup(name: str, file: str, dirs: list[Path]) -> int | None:
    for d in dirs:
        try:
            text = (d / file).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
        return None
    return None


def _primary_gid(uid: int, dirs: list[Path]) -> int:
    for d in dirs:
        try:
            text = (d / "etc/passwd").read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[2] == str(uid) and fields[3].isdigit():
                return int(fields[3])
        return 0
    return 0


def user_ids(user: str, mounts: list[Mount], *, image: str) -> tuple[int, int]:
    """The image's USER as (uid, gid), names resolved in the image's own passwd/group."""
    if not user:
        return 0, 0
    dirs = _layer_dirs(mounts)
    name, _, group = user.partition(":")
    uid = int(name) if name.isdigit() else _lookup(name, "etc/passwd", dirs)
    if uid is None:
        raise SpecError(f'image "{image}": user "{name}" not found in /etc/passwd')
    if not group:
        return uid, _primary_gid(uid, dirs)
    gid = int(group) if group.isdigit() else _lookup(group, "etc/group", dirs)
    if gid is None:
        raise SpecError(f'image "{image}": group "{group}" not found in /etc/group')
    return uid, gid


def build(
    *,
    pod: objects_pb2.Pod,
    container: objects_pb2.Container,
    image: Image,
    attempt: int,
    mounts: list[Mount],
    state_dir: Path,
    pids_limit: int,
    sources: ResolvedEnv | None = None,
) -> ContainerSpec:
    env = environment(pod, container, image, sources)
    args = tuple(expand(a, env) for a in process_args(container, image))
    uid, gid = user_ids(image.config.user, mounts, image=image.reference)
    labels = {k: v for k, v in pod.metadata.annotations.items() if k not in OWN_LABELS}
    labels.update(
        {
            LABEL_NAMESPACE: pod.metadata.namespace or "default",
            LABEL_POD: pod.metadata.name,
            LABEL_UID: pod.metadata.uid,
            LABEL_SPEC_HASH: spec_hash(pod),
            LABEL_CONTAINER: container.name,
            LABEL_ATTEMPT: str(attempt),
            LABEL_IMAGE_ID: image.digest,
        }
    )
    return ContainerSpec(
        id=container_id(pod, container.name, attempt),
        hostname=hostname(pod),
        rootfs="",
        rootfs_mounts=tuple(mounts),
        args=args,
        env=tuple(f"{k}={v}" for k, v in env.items()),
        cwd=container.working_dir or image.config.working_dir or "/",
        uid=uid,
        gid=gid,
        resources=resources(container, pids_limit=pids_limit),
        log_path=str(log_path(state_dir, pod, container.name, attempt)),
        labels=labels,
        secret_env=secret_names(sources),
    )

"""Flags for operating a cluster (issue 16): metrics, the dashboard, autoscaling.

- `--metrics-listen HOST:PORT`: serve Prometheus metrics there (off by default). A loopback
  or private address only, unless `--metrics-public` (the endpoint has no authentication).
- `--dashboard-listen HOST:PORT`: serve the read-only web dashboard there, over TLS with the
  API's serving certificate (off by default). A client certificate of the cluster CA, or the
  dashboard token (`<data-dir>/dashboard-token`, made on first start, printed by `up`), is
  needed for every page.
- `--horizontal-pod-autoscaler-sync-period 15s`: how often each HPA is evaluated (kube-
  controller-manager's flag and default).
- `--horizontal-pod-autoscaler-downscale-stabilization 300s`: the scale-down window used when
  an HPA's behavior does not set one (Kubernetes' default).
- `--horizontal-pod-autoscaler-tolerance 0.1`: no scaling while usage/target is within 10 %.

`split(argv)` takes these flags out of a control-plane command line (as the node and Services
flags are taken), `add_flags` shows them in `--help`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from pilothouse.process import metricserver


class SettingsError(ValueError):
    """An operating flag with an unusable value."""


@dataclass(frozen=True, slots=True)
class OperateSettings:
    metrics_listen: str = ""
    dashboard_listen: str = ""
    hpa_sync_period: float = 15.0
    hpa_downscale_stabilization: float = 300.0
    hpa_tolerance: float = 0.1


def _seconds(text: str) -> float:
    text = text.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("operating the cluster")
    group.add_argument(
        "--metrics-listen",
        default="",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there (off by default; loopback or private only)",
    )
    group.add_argument(
        "--metrics-public",
        action="store_true",
        help="allow --metrics-listen on a wildcard or public address",
    )
    group.add_argument(
        "--dashboard-listen",
        default="",
        metavar="HOST:PORT",
        help="serve the read-only web dashboard there (TLS; off by default)",
    )
    group.add_argument(
        "--horizontal-pod-autoscaler-sync-period",
        default="15s",
        metavar="DURATION",
        help="how often HPAs are evaluated (default 15s)",
    )
    group.add_argument(
        "--horizontal-pod-autoscaler-downscale-stabilization",
        default="300s",
        metavar="DURATION",
        help="scale-down stabilization window when an HPA sets none (300s)",
    )
    group.add_argument(
        "--horizontal-pod-autoscaler-tolerance",
        default="0.1",
        metavar="RATIO",
        help="no scaling while usage/target is within this of 1 (0.1)",
    )


def split(argv: Sequence[str]) -> tuple[OperateSettings, list[str]]:
    """The operating settings in `argv`, and the arguments that are not theirs."""
    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    args, rest = parser.parse_known_args(list(argv))
    try:
        metrics = metricserver.check_listen(args.metrics_listen, public=args.metrics_public)
    except ValueError as error:
        raise SettingsError(f"--metrics-listen: {error}") from None
    if args.dashboard_listen and ":" not in args.dashboard_listen:
        raise SettingsError(f"--dashboard-listen must be HOST:PORT, got {args.dashboard_listen!r}")
    try:
        period = _seconds(args.horizontal_pod_autoscaler_sync_period)
        window = _seconds(args.horizontal_pod_autoscaler_downscale_stabilization)
        tolerance = float(args.horizontal_pod_autoscaler_tolerance)
    except ValueError as error:
        raise SettingsError(f"a --horizontal-pod-autoscaler-* flag: {error}") from None
    if period <= 0 or window < 0 or not 0 <= tolerance < 1:
        raise SettingsError(
            "--horizontal-pod-autoscaler-sync-period must be > 0, the stabilization >= 0 and "
            "the tolerance in [0, 1)"
        )
    return (
        OperateSettings(
            metrics_listen=metrics,
            dashboard_listen=args.dashboard_listen,
            hpa_sync_period=period,
            hpa_downscale_stabilization=window,
            hpa_tolerance=tolerance,
        ),
        rest,
    )

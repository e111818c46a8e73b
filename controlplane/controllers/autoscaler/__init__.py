"""autoscaling/v2 HorizontalPodAutoscalers: `algorithm` (Kubernetes' arithmetic, pure),
`proposal` (the metrics' proposal from pods and usage, pure) and `controller` (reads usage,
scales the target, writes status)."""

from controlplane.controllers.autoscaler.controller import (
    SCALABLE,
    MetricsSource,
    Settings,
    horizontal_pod_autoscaler_controller,
)

__all__ = ["SCALABLE", "MetricsSource", "Settings", "horizontal_pod_autoscaler_controller"]

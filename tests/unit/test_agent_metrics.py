"""The agent's metrics: counted without a metrics library, exposed in Prometheus' text format
only when served (`metrics.server`)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodeagent import metrics


def _scrape() -> dict[str, list[tuple[str, dict[str, str], float]]]:
    served = metrics.server("127.0.0.1:0")
    text = generate_latest(served._registry).decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_counts_are_served_as_prometheus_families() -> None:
    before = _scrape()
    metrics.probe_result("liveness", ok=True)
    metrics.probe_result("liveness", ok=False)
    metrics.probe_result("liveness", ok=True)
    metrics.image_pull(ok=True, seconds=0.5)
    metrics.image_pull(ok=True, seconds=400)
    metrics.image_pull(ok=False)
    container = SimpleNamespace(
        name="c", cpu_nanocores=250_000_000, memory_working_set_bytes=1024, restarts=2
    )
    pod = SimpleNamespace(
        namespace="ns",
        name="p",
        containers=[container],
        network_rx_bytes=10,
        network_tx_bytes=20,
    )
    metrics.observe(SimpleNamespace(cpu_nanocores=1_000_000_000, memory_working_set_bytes=5), [pod])
    after = _scrape()

    def value(family: str, sample: str, **labels: str) -> float:
        def find(scraped: dict[str, list[tuple[str, dict[str, str], float]]]) -> float:
            for name, got, v in scraped.get(family, []):
                if name == sample and got == labels:
                    return v
            return 0.0

        return find(after) - find(before)

    probes = "pilothouse_probe_results"
    assert value(probes, f"{probes}_total", probe="liveness", result="success") == 2
    assert value(probes, f"{probes}_total", probe="liveness", result="failure") == 1
    pulls = "pilothouse_image_pulls"
    assert value(pulls, f"{pulls}_total", result="success") == 2
    assert value(pulls, f"{pulls}_total", result="failure") == 1
    seconds = "pilothouse_image_pull_duration_seconds"
    assert value(seconds, f"{seconds}_bucket", le="0.1") == 0
    assert value(seconds, f"{seconds}_bucket", le="0.5") == 1  # le: a value on a bound counts
    assert value(seconds, f"{seconds}_bucket", le="300.0") == 1
    assert value(seconds, f"{seconds}_bucket", le="+Inf") == 2
    assert value(seconds, f"{seconds}_count") == 2
    assert value(seconds, f"{seconds}_sum") == 400.5
    key = {"namespace": "ns", "pod": "p", "container": "c"}
    assert dict(after)["pilothouse_container_cpu_usage_cores"] == [
        ("pilothouse_container_cpu_usage_cores", key, 0.25)
    ]
    assert ("pilothouse_container_restarts_total", key, 2.0) in after[
        "pilothouse_container_restarts"
    ]
    assert after["pilothouse_node_cpu_usage_cores"][0][2] == 1.0


def test_recording_loads_no_metrics_library() -> None:
    script = (
        "import sys\n"
        "from nodeagent import metrics\n"
        "metrics.probe_result('readiness', ok=True); metrics.image_pull(ok=True, seconds=1)\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"

"""A bad manifest's error quotes what a person wrote only as far as it helps find it."""

from __future__ import annotations

from pilothouse.manifests import loader

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: busybox:stable
          resources:
            requests:
              cpu: {cpu}
"""


def test_a_10kb_bad_value_is_quoted_short_with_its_length() -> None:
    long = "x" * 10_000
    _, problems = loader.parse(WEB.format(name="web" + long, cpu="5" + long), source="w.yaml")
    assert {p.field for p in problems} >= {
        "metadata.name",
        "spec.template.spec.containers[0].resources.requests[cpu]",
    }
    for problem in problems:
        text = str(problem)
        assert len(text) < 1000, f"an error line of {len(text)} characters: {text[:200]}…"
    name = next(p for p in problems if p.field == "metadata.name")
    assert '"webxxx' in name.message and "(10003 characters)" in name.message
    assert "must be no more than 253 characters" in name.message


def test_short_values_are_quoted_whole() -> None:
    _, problems = loader.parse(WEB.format(name="Web_1", cpu="5x"), source="w.yaml")
    messages = " ".join(p.message for p in problems)
    assert '"Web_1"' in messages and '"5x"' in messages

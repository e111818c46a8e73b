#!/usr/bin/env bash
# The README's first command: install everything, start a local cluster in the background
# (`pilothouse up -d`), run deploy/examples/web.yaml on it and show where its replicas run.
# Stop the cluster with `pilothouse down`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${PILOTHOUSE_NODES:-3}"
cd "$REPO"

deploy/install.sh
pilothouse up -d --nodes "$NODES"
pilothouse apply -f deploy/examples/web.yaml
if ! pilothouse rollout status deployment/web --timeout 120s; then
  pilothouse get pods -o wide >&2
  echo "quickstart: deployment/web did not become available; see \`pilothouse describe deployment web\`" >&2
  exit 1
fi
pilothouse get deployments
pilothouse get pods -o wide

#!/usr/bin/env bash
# Install everything (deploy/install.sh --test) and run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
deploy/install.sh --test
VENV="${PILOTHOUSE_VENV:-$REPO/.venv}"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit $rc

#!/usr/bin/env bash
# Install Pilothouse and everything it runs on, on Debian 12, as root.
#
# System packages: etcd (the store), runc + conmon (containers), docker-registry (local OCI
# registry), busybox-static (the offline test image), CNI plugins (pod networking), iproute2,
# nftables + conntrack (the Services data plane).
# Python: a virtualenv at $PILOTHOUSE_VENV (default: <repo>/.venv) with the package installed
# editable, and `pilothouse` linked into /usr/local/bin.
#
# Usage: deploy/install.sh [--test] [--systemd]
#   --test     also install the test dependencies
#   --systemd  also install the systemd units (deploy/systemd/) for running on VMs
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PILOTHOUSE_VENV:-$REPO/.venv}"
EXTRAS=""
UNITS=0
for arg in "$@"; do
  case "$arg" in
    --test) EXTRAS="[test]" ;;
    --systemd) UNITS=1 ;;
    *) echo "install.sh: unknown option $arg (use --test, --systemd)" >&2; exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "install.sh: run as root (it installs system packages and runs containers)" >&2
  exit 1
fi

PACKAGES=(etcd-server runc conmon docker-registry busybox-static containernetworking-plugins
  iproute2 iptables nftables conntrack python3 python3-venv python3-pip ca-certificates)
# --test: skopeo and umoci read `pilothouse build` output in tests; buildah is bench/build.py's peer;
# chromium and its driver open the dashboard in tests (Selenium comes with the test extras);
# QEMU and mmdebstrap boot the VM tests' Debian machines (pilothouse.cli.vm); ping checks the
# pod routes between nodes (tests/integration/test_pod_routes.py).
[[ -n "$EXTRAS" ]] && PACKAGES+=(skopeo umoci buildah chromium chromium-driver
  qemu-system-x86 qemu-utils mmdebstrap iputils-ping)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as system services on install; Pilothouse supervises its own copies.
for unit in etcd docker-registry; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -e "$REPO$EXTRAS"
ln -sf "$VENV/bin/pilothouse" /usr/local/bin/pilothouse
echo "installed: $("$VENV/bin/pilothouse" --version 2>/dev/null || echo pilothouse)"
if ((UNITS)); then
  install -m 0644 "$REPO"/deploy/systemd/*.service /etc/systemd/system/
  systemctl daemon-reload
  echo "systemd units installed: pilothouse-controlplane.service, pilothouse-agent.service"
fi

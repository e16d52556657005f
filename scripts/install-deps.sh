#!/usr/bin/env bash
# Install the system packages wg-tuner's lab, demo and tests need (Debian 12, as root).
# Idempotent: apt runs only when something is missing.
set -euo pipefail
# prometheus: promtool (checks and unit-tests the alert rules); its service is not started.
# prometheus-node-exporter: the textfile collector as a real consumer (tests start their own).
# qemu-system-x86, busybox-static, kmod: the VM lab (Debian's stock kernel, see install-vm-kernel.sh).
# systemd-journal-remote: writes real journal files for the journal reader's tests (no journald here).
# iputils-ping: a ping flood brings real receive interrupts to the VM's NIC.
# ethtool: an independent reading of NIC features in the offload tests (wg-tuner itself uses netlink).
pkgs=(wireguard-go wireguard-tools nftables iperf3 iproute2 procps util-linux iptables systemd prometheus
      prometheus-node-exporter qemu-system-x86 busybox-static kmod ethtool systemd-journal-remote
      iputils-ping)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$(dirname "$0")/install-vm-kernel.sh"

#!/usr/bin/env bash
# Installs `promtool` (it checks and unit-tests ops/prometheus/esync.rules.yml)
# from Debian's `prometheus` package when it is missing. Idempotent: does
# nothing when `promtool` is already on PATH.
#
# Only the binary is wanted: if installing the package started or enabled a
# Prometheus server (Debian does on hosts with systemd or sysv-init), it is
# stopped and disabled again.
set -euo pipefail

log() { printf 'install_promtool: %s\n' "$*" >&2; }
die() { printf 'install_promtool: error: %s\n' "$*" >&2; exit 1; }

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  die "promtool is missing and installing it needs root: run 'apt-get install --no-install-recommends prometheus' as root (or give this user password-less sudo), or put promtool on PATH"
fi
command -v apt-get >/dev/null 2>&1 \
  || die "promtool is missing and apt-get is not available: install promtool (from the Prometheus release tarball) and put it on PATH"

# Was a Prometheus service there before? Then it is the operator's: leave it.
service_existed=false
if [ -e /lib/systemd/system/prometheus.service ] || [ -e /etc/systemd/system/prometheus.service ] || [ -e /etc/init.d/prometheus ]; then
  service_existed=true
fi

log "installing promtool from the Debian package prometheus"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
  || die "apt-get update failed"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
  || die "apt-get install prometheus failed"

if [ "$service_existed" = false ]; then
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
  fi
fi

command -v promtool >/dev/null 2>&1 || die "the prometheus package is installed but promtool is not on PATH"
log "$(promtool --version 2>&1 | head -n 1)"

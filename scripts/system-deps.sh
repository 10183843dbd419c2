#!/usr/bin/env bash
# System packages the TEST SUITE needs as real peers (the demo itself needs none):
#   GStreamer RTSP server (+ python3-gi for /usr/bin/python3) and Debian's chromium for browser tests.
#   plus the Node packages of the TimescaleDB (PGlite) test server (npm ci in scripts/pglite).
# Installs them with apt-get when missing and we are root; otherwise prints what to install.
set -euo pipefail
bash "$(dirname "$0")/pglite/install.sh"
need=()
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer','1.0'); from gi.repository import GstRtspServer" \
  2>/dev/null || need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# Validates docker/compose.yaml when the Docker compose plugin is absent.
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "==> system packages for the tests: ${need[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
else
  echo "please install: sudo apt-get install ${need[*]}" >&2
  exit 1
fi

#!/usr/bin/env bash
# Renders an analyze --html report in headless Chromium and saves a screenshot, to look at
# what a user sees. Usage: scripts/render_report.sh report.html out.png [WIDTH,HEIGHT] [VIEW]
# VIEW is the page's fragment, e.g. 'layer=5&head=2&src=induction'.
# Installs Chromium (Debian package `chromium`) when it is missing and apt-get can.
set -e
html=${1:?usage: render_report.sh report.html out.png [W,H]}
png=${2:?usage: render_report.sh report.html out.png [W,H]}
size=${3:-1400,1800}
view=${4:+#$4}
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y chromium >/dev/null; else echo "render_report: chromium is not installed" >&2; exit 1; fi
fi
prof=$(mktemp -d)
trap 'rm -rf "$prof"' EXIT
# --virtual-time-budget lets the page's script run to completion before the shot
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$prof" --hide-scrollbars --virtual-time-budget=5000 \
  --screenshot="$png" --window-size="$size" "file://$(realpath "$html")$view" 2>/dev/null
[ -s "$png" ] && echo "render_report: $png ($size)"

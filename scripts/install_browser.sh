#!/usr/bin/env bash
# Idempotent install of the headless browser the real-browser test drives: Debian's Chromium package
# (/usr/bin/chromium). Does nothing when it is already there. Playwright drives this system binary;
# `playwright install` (which downloads browsers) is never used.
set -euo pipefail
CHROMIUM=${PICKLOOP_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "pickloop: $CHROMIUM is missing and installing it needs root." >&2
  echo "pickloop: run as root (or with sudo): apt-get update && apt-get install -y --no-install-recommends chromium" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "pickloop: $CHROMIUM is missing and apt-get is not available; install Chromium with your package manager" >&2
  exit 1
fi

echo "pickloop: installing Chromium (Debian package) for the browser test"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ ! -x "$CHROMIUM" ]; then
  echo "pickloop: apt-get installed chromium but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "pickloop: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"

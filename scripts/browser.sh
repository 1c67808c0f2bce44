#!/usr/bin/env bash
# Installs Debian's Chromium for the status-page test, once (idempotent). Prints its path.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "browser.sh: installing Debian's chromium (first run only)" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v chromium

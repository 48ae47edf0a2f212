#!/usr/bin/env bash
# Installs the Debian packages snapshotd needs (Chromium, its headless shell, fonts, npm for the
# consent rules, and uBlock Origin's package for the EasyList and EasyPrivacy filter lists) when
# absent, and wrk, the HTTP load generator behind `make bench`'s API figures.
set -euo pipefail
want=(chromium chromium-headless-shell fonts-liberation fonts-noto-color-emoji fonts-noto-cjk webext-ublock-origin-chromium)
want+=(wrk)  # only `make bench` needs it; the Dockerfile leaves it out
command -v npm >/dev/null 2>&1 || want+=(npm)  # installs the consent rules (package.json)
command -v openssl >/dev/null 2>&1 || want+=(openssl)  # the tests' local TSA answers with `openssl ts -reply`
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

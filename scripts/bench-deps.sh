#!/usr/bin/env bash
# Debian packages only `make bench` uses, installed when absent: python3-doc, whose HTML pages are
# the real-world corpus. (The ad-heavy page's host names come from the EasyList and EasyPrivacy
# copies of webext-ublock-origin-chromium, which scripts/system-deps.sh installs for snapshotd.)
set -euo pipefail
wanted=(python3-doc)
absent=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    absent+=("$package")
  fi
done
if [ ${#absent[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages for the bench: ${absent[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  "${absent[@]}" >/dev/null

#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's browser tests when it is missing (Playwright drives
# it through executable_path; a browser download by Playwright itself is never used).
set -u
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian package) for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "could not install chromium: browser tests will skip (or fail under CONVEYOR_REQUIRE_SERVICES=1)"
fi
exit 0

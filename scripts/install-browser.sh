#!/usr/bin/env bash
# Install headless Chromium for the report's browser tests (tests/test_report.py drives it with Playwright).
# Debian's `chromium` package is used, never a browser downloaded by Playwright. Without root or apt-get this says
# why and exits 0: the browser tests then skip with that reason (or fail, with HYPERBRACE_REQUIRE_BROWSER=1).
set -uo pipefail
log() { echo "install-browser: $*" >&2; }
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [[ -x "$candidate" ]]; then
        log "found $candidate"
        exit 0
    fi
done
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "cannot install Chromium here (needs root and apt-get): the browser tests will be skipped"
    exit 0
fi
log "installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
    log "apt-get install chromium failed: the browser tests will be skipped"
    exit 0
fi
log "installed $(/usr/bin/chromium --version 2>/dev/null)"

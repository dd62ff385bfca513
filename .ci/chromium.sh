# Headless Chromium for the report's browser test (tests/integration/test_report_browser.py).
#
# Sourced (or run) by .ci/run before pytest. Installs Debian's `chromium` when
# /usr/bin/chromium is missing. Never fails the CI run: when Chromium cannot be installed it
# says why, and the browser test then skips with a visible reason.

_personagen_chromium() {
    if [ -x /usr/bin/chromium ]; then
        echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
        return 0
    fi
    if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "chromium: not installed and cannot apt-get install it here (needs root and apt);" \
            "the browser test will skip"
        return 0
    fi
    echo "chromium: installing Debian's chromium package"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium fonts-dejavu-core >/dev/null; }; then
        echo "chromium: apt-get install failed; the browser test will skip"
        return 0
    fi
    if [ -x /usr/bin/chromium ]; then
        echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
    else
        echo "chromium: installed, but /usr/bin/chromium is missing; the browser test will skip"
    fi
    return 0
}

_personagen_chromium || true
unset -f _personagen_chromium

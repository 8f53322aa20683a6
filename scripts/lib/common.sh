# shellcheck shell=bash
# Shared helpers for hybrun's scripts/*.  Source it; it defines functions only (no side effects
# except HYB_ROOT).  Callers are expected to run with `set -euo pipefail`.
#
#   HYB_ROOT               absolute path of the repository root
#   hyb_log MSG...         "[<tag>] MSG" on stderr (tag: $HYB_LOG_TAG, default the script name)
#   hyb_die MSG...         hyb_log "ERROR: MSG" and exit 1
#   hyb_need_root          die unless running as root
#   hyb_ensure_cargo       make `cargo` callable (adds ~/.cargo/bin to PATH when needed) or die
#                          with instructions; returns 0 when cargo works

HYB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

hyb_log() { echo "[${HYB_LOG_TAG:-$(basename "$0")}] $*" >&2; }
hyb_die() { hyb_log "ERROR: $*"; exit 1; }
hyb_need_root() { [ "$(id -u)" = 0 ] || hyb_die "must run as root (try: sudo $0 $*)"; }

hyb_ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local d
        for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
            if [ -x "$d/cargo" ]; then export PATH="$d:$PATH"; break; fi
        done
    fi
    command -v cargo >/dev/null 2>&1 || hyb_die "no Rust toolchain: 'cargo' is not on PATH nor in ~/.cargo/bin.
    Install one with rustup (https://rustup.rs), e.g.:  curl -sSf https://sh.rustup.rs | sh -s -- -y
    then:  export PATH=\"\$HOME/.cargo/bin:\$PATH\""
}

# The Debian archive this machine's apt uses (a site's own mirror where there is one), for
# debootstrap: the first active `URIs:` (deb822) or `deb` line naming a .../debian archive;
# commented lines (e.g. a snapshot URL left as a note) are not sources.
hyb_debian_mirror() {
    local found
    found=$(grep -h -E '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list.d/* \
                /etc/apt/sources.list 2>/dev/null \
            | grep -o -E 'https?://[^ ]*/debian' | head -n 1 || true)
    echo "${found:-http://deb.debian.org/debian}"
}

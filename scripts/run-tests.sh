#!/usr/bin/env bash
# The whole test suite, inside scripts/stack.sh. With cargo-nextest (on the build
# machines), every test runs in its own process, six at a time: most tests wait on
# the emulator, backoffs and timers rather than on the CPU, so this takes a third of
# the time of `cargo test`, which runs one test binary after another.
set -euo pipefail
if ${CARGO:-cargo} nextest --version >/dev/null 2>&1; then
    exec ${CARGO:-cargo} nextest run --no-fail-fast -j "${DOCLINK_TEST_JOBS:-6}"
else
    exec ${CARGO:-cargo} test --lib --bins --tests --no-fail-fast
fi

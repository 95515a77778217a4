#!/usr/bin/env bash
# `make chaos`, run inside scripts/stack.sh: the reliability tests at full size
# (2,000 events killed 12 times, long fuzzing), then RELIABILITY.md from what they
# proved. The same tests run small in `make test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fragments=$(mktemp -d /tmp/doclink-reliability.XXXXXX)
trap 'rm -rf "$fragments"' EXIT
export DOCLINK_RELIABILITY_DIR="$fragments"
export CHAOS_EVENTS=${CHAOS_EVENTS:-2000} CHAOS_KILLS=${CHAOS_KILLS:-12}
export PROPTEST_CASES=${PROPTEST_CASES:-20000}
# Every file is expected: a missing one would leave its rows out of the report.
tests=()
for t in chaos outage faults resilience credentials hostile fuzz secrets startup corpus; do
    if [ ! -f "tests/$t.rs" ]; then
        echo "chaos: tests/$t.rs is missing; its figures would be absent from RELIABILITY.md" >&2
        exit 2
    fi
    tests+=(--test "$t")
done
${CARGO:-cargo} test "${tests[@]}" -- --test-threads=2
python3 scripts/reliability_report.py "$fragments" RELIABILITY.md

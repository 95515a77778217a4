#!/usr/bin/env bash
# The pipeline benchmark, run inside scripts/stack.sh (`make bench-pipeline`):
# doclink beside the Python peer on the shared yardstick, then doclink's memory at
# 10,000 and 100,000 events. Writes its section of BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="${DOCLINK_SHARED_BENCH:-$root/../shared/bench}"
if [ ! -f "$shared/pipeline_bench.py" ]; then
    echo "bench-pipeline: the yardstick is not at $shared (set DOCLINK_SHARED_BENCH)" >&2
    exit 2
fi
"$(dirname "$DOCLINK_STACK_PYTHON")/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-bench.txt"
exec "$DOCLINK_STACK_PYTHON" "$root/scripts/bench_pipeline.py" "$shared" "${CARGO_TARGET_DIR:-$root/target}/release/doclink" "$root/BENCHMARKS.md"

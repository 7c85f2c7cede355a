#!/usr/bin/env bash
# Runs every fuzz target for a short time on its corpus (in the repository,
# minimised), as .ci/run does: a crash or a broken property fails the run.
# `fuzz/smoke.sh 600` gives each target ten minutes instead.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --quiet --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test has no unsafe (the workspace forbids
# it), and uninstrumented runs are three to five times faster.
cargo fuzz build -s none
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if ! cargo fuzz run -s none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $target: $runs runs in ${seconds}s, no failure"
    rm -f "$log"
done

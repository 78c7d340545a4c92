#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 60) in the active environment, from seeds made
# at run time by make_corpus.py; fails on any crash, hang (> 5 s per input) or input
# that makes the process exceed 2 GB. Crashing inputs are kept in $FCNN_FUZZ_DIR/crashes.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      TARGET: idx, load (default: both)
#   FCNN_FUZZ_RUNS=N tests/fuzz/run.sh ...       N executions per target instead of SECONDS
#
# The corpus ($FCNN_FUZZ_DIR/corpus) is kept, so a second run continues it.
# run_sanitized.sh calls this script under its ASan+UBSan build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-60}"
shift || true
if [ -n "${FCNN_FUZZ_RUNS:-}" ]; then
    budget=(-runs="$FCNN_FUZZ_RUNS")
    budget_text="$FCNN_FUZZ_RUNS executions"
else
    budget=(-max_total_time="$seconds")
    budget_text="$seconds s"
fi
targets=("${@:-idx load}")
read -r -a targets <<<"${targets[*]}"
work="${FCNN_FUZZ_DIR:-${TMPDIR:-/tmp}/fcnn-fuzz}"
mkdir -p "$work/crashes"
python "$here/make_corpus.py" "$work/corpus"
for target in "${targets[@]}"; do
    echo "fuzzing $target for $budget_text"
    # -rss_limit_mb: a file that makes a reader allocate past 2 GB counts as a crash.
    status=0
    python "$here/fuzz_$target.py" "$work/corpus/$target" "${budget[@]}" \
        -timeout=5 -rss_limit_mb=2048 -artifact_prefix="$work/crashes/$target-" \
        -print_final_stats=1 >"$work/$target.log" 2>&1 || status=$?
    grep -E '^(Done|stat::(number_of_executed_units|new_units_added|slowest_unit_time_sec|peak_rss_mb))' \
        "$work/$target.log" || true
    if [ "$status" -ne 0 ] || ls "$work/crashes/$target-"* >/dev/null 2>&1; then
        tail -n 40 "$work/$target.log" >&2
        echo "fuzz $target: failed (exit $status); inputs in $work/crashes" >&2
        exit 1
    fi
done

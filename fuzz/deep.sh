#!/usr/bin/env bash
# Deep fuzzing: runs each fuzz target (all of them, or those named) to FUZZ_RUNS executions (10
# million unless set), one target at a time in one process, starting from the kept corpus in
# fuzz/corpus/<target>, and prints per target the executions, executions per second, elapsed
# time and libFuzzer's final coverage (cov: edges reached, ft: features).
#
#   fuzz/deep.sh                 every target, 10 million executions each
#   fuzz/deep.sh drain window    those two
#   FUZZ_RUNS=1000000 fuzz/deep.sh
#   fuzz/deep.sh --keep          also replace each kept corpus by the smallest set of inputs, from
#                                it and from this run's, that reaches every edge either reached
#                                (libFuzzer's -merge=1 over edges alone, -use_counters=0, which
#                                keeps it to tens of KB; CI's short run regrows the hit counts)
#
# The build has no sanitizer and no comparison tracing (`-s none --no-trace-compares`; override
# with FUZZ_SANITIZER=address and FUZZ_TRACE_COMPARES=1), which makes the targets two to six times
# faster. The harnesses and almost all the code under test are safe Rust; the exception is the
# shared state of the drainer and the bulkhead, freed by unsafe code, which miri checks in its
# unit tests and CI's short fuzz run replays the kept corpus over under AddressSanitizer. New
# inputs go to a scratch corpus under fuzz/target/deep, never into fuzz/corpus unless --keep.
set -euo pipefail
cd "$(dirname "$0")"

keep=0
names=()
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) names+=("$a") ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  read -r -a names <<<"$(cargo +nightly fuzz list | tr '\n' ' ')"
fi

runs=${FUZZ_RUNS:-10000000}
sanitizer=${FUZZ_SANITIZER:-none}
flags=(-s "$sanitizer")
[ "${FUZZ_TRACE_COMPARES:-0}" = 1 ] || flags+=(--no-trace-compares)
target_dir=${CARGO_TARGET_DIR:-target}/deep-$sanitizer-${FUZZ_TRACE_COMPARES:-0}
scratch=target/deep
cargo +nightly fuzz build "${flags[@]}" --target-dir "$target_dir"

summary=()
for t in "${names[@]}"; do
  echo "--- fuzz target $t: $runs executions"
  mkdir -p "corpus/$t"
  rm -rf "$scratch/$t" && mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  t0=$(date +%s.%N)
  # The scratch corpus comes first, so new inputs are written there; corpus/<t> is only read.
  set +e
  cargo +nightly fuzz run "${flags[@]}" --target-dir "$target_dir" "$t" "$scratch/$t" "corpus/$t" \
    -- -runs="$runs" -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee "$log" |
    grep --line-buffered -E '^#[0-9]+[[:space:]]+(INITED|DONE|pulse)'
  status=${PIPESTATUS[0]}
  set -e
  t1=$(date +%s.%N)
  if [ "$status" -ne 0 ]; then
    echo "error: fuzz target $t failed; see fuzz/$log and fuzz/artifacts/$t" >&2
    exit 1
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  # Wall time of the whole run (corpus loading included), and executions per second over it.
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
  rate=$(awk -v n="$execs" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  cov=$(echo "$done_line" | sed -n 's/.* cov: \([0-9]*\) .*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.* ft: \([0-9]*\) .*/\1/p')
  corp=$(echo "$done_line" | sed -n 's/.* corp: \([^ ]*\) .*/\1/p')
  summary+=("$(printf '%-9s %10s %9s %6ss %6s %6s  %s' "$t" "$execs" "$rate" "$secs" "$cov" "$ft" "$corp")")
  if [ "$keep" = 1 ]; then
    rm -rf "$scratch/$t.min" && mkdir -p "$scratch/$t.min"
    cargo +nightly fuzz run "${flags[@]}" --target-dir "$target_dir" "$t" "$scratch/$t.min" \
      "corpus/$t" "$scratch/$t" -- -merge=1 -use_counters=0 >"$scratch/$t.merge.log" 2>&1
    rm -rf "corpus/$t" && mv "$scratch/$t.min" "corpus/$t"
    echo "kept corpus/$t: $(ls "corpus/$t" | wc -l) inputs, $(cat "corpus/$t"/* | wc -c) bytes"
  fi
done

echo
printf '%-9s %10s %9s %7s %6s %6s  %s\n' target execs exec/s time cov ft 'corpus (inputs/size)'
printf '%s\n' "${summary[@]}"

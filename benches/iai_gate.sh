#!/usr/bin/env bash
# The instruction-count gate: runs `cargo bench --bench instructions` (iai-callgrind) and compares
# each benchmark's instruction count (callgrind's Ir) with benches/instructions.baseline.
#
#   benches/iai_gate.sh            # fail if any count exceeds its baseline by more than 5%
#   benches/iai_gate.sh --update   # rewrite the baseline from this run (commit it with the change)
#
# Threshold (IAI_THRESHOLD_PERCENT, default 5): counts are deterministic for a given compiler,
# source, libc and valgrind, and the same on AVX2-only and AVX-512 machines (valgrind hides
# AVX-512, so `Auto` is AVX2 on both). What moves them without a code change is the toolchain
# (CI takes the current stable rustc, whose LLVM may unroll or schedule a loop differently): 5%
# leaves room for that, and still catches what the gate is for: a lost vectorisation (the AVX2
# counts are several times below the generic ones, see the baseline), an extra pass over the data
# (Adam's second pass on the exact schedule is tens of percent), a check added per element.
# A count that drops by more than the threshold is reported, not failed: update the baseline so
# the gain is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=benches/instructions.baseline
threshold=${IAI_THRESHOLD_PERCENT:-5}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! IAI_CALLGRIND_COLOR=never cargo bench -p tessera-benches --bench instructions >"$log" 2>&1; then
    cat "$log"
    echo "iai_gate: the instruction benchmarks failed" >&2
    exit 1
fi
# "instructions::group::function id:args" headers, then "  Instructions: N|..." lines.
counts=$(awk '
    /^[^ ]+::[^ ]+::/ { name = $0; sub(/ +$/, "", name); next }
    /^ +Instructions:/ { split($2, a, "|"); gsub(/[^0-9]/, "", a[1]); print name "\t" a[1] }
' "$log")
if [ -z "$counts" ]; then
    cat "$log"
    echo "iai_gate: no instruction counts found in the benchmark output" >&2
    exit 1
fi
if [ "${1:-}" = "--update" ]; then
    printf '%s\n' "$counts" >"$baseline"
    echo "iai_gate: wrote $(wc -l <"$baseline") counts to $baseline"
    exit 0
fi
awk -F'\t' -v t="$threshold" '
    NR == FNR { base[$1] = $2; next }
    {
        seen[$1] = 1
        if (!($1 in base)) { printf "NEW       %-70s %14d\n", $1, $2; missing = 1; next }
        change = ($2 - base[$1]) * 100.0 / base[$1]
        status = "ok"
        if (change > t) { status = "REGRESSED"; failed = 1 }
        else if (change < -t) { status = "improved" }
        printf "%-9s %-70s %14d %+7.2f%%\n", status, $1, $2, change
    }
    END {
        for (k in base) if (!(k in seen)) { printf "MISSING   %s\n", k; missing = 1 }
        if (failed) { printf "iai_gate: instruction counts regressed by more than %s%%\n", t; exit 1 }
        if (missing) { print "iai_gate: benchmarks and baseline differ; run benches/iai_gate.sh --update"; exit 1 }
        printf "iai_gate: every count within +%s%% of the baseline\n", t
    }
' "$baseline" <(printf '%s\n' "$counts")

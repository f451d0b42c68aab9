#!/usr/bin/env bash
# Runs fuzz targets one after another, each for FUZZ_SECONDS (default 20) on one core, from the
# committed seeds (fuzz/seeds/<target>) plus the local corpus (fuzz/corpus/<target>, not
# committed), with the target's dictionary if it has one. One summary line per target
# (executions, seconds, result); logs in fuzz/logs/. Exits non-zero if any target crashed: the
# reproducer is in fuzz/artifacts/<target>/.
#
#   fuzz/campaign.sh                      # every target, 20 s each (CI's smoke run)
#   FUZZ_SECONDS=600 fuzz/campaign.sh npy  # a 10-minute campaign of one target
#
# Extra libFuzzer flags: FUZZ_FLAGS (e.g. "-fork=1 -ignore_crashes=1" to keep going past a crash).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
# A parser or kernel that allocates what its input claims rather than what it holds shows up as
# a malloc over this limit (the targets' own inputs need a few MB).
limits=(-malloc_limit_mb=512 -rss_limit_mb=2048)
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
cargo +nightly fuzz build "${targets[@]:0:1}" >/dev/null 2>&1 || cargo +nightly fuzz build
mkdir -p logs
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    extra=()
    [ -d "seeds/$t" ] && extra+=("seeds/$t")
    flags=("${limits[@]}" -max_total_time="$seconds" -print_final_stats=1)
    [ -f "dicts/$t.dict" ] && flags+=("-dict=dicts/$t.dict")
    # shellcheck disable=SC2086
    if cargo +nightly fuzz run "$t" "corpus/$t" "${extra[@]}" -- "${flags[@]}" ${FUZZ_FLAGS:-} \
        >"logs/$t.log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/logs/$t.log, fuzz/artifacts/$t/)"
        failed=1
    fi
    runs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
    secs=$(grep -a -o 'Done [0-9]* runs in [0-9]* second' "logs/$t.log" | tail -1 | grep -o 'in [0-9]*' | grep -o '[0-9]*' || true)
    printf '%-20s %10s execs %6s s  %s\n' "$t" "${runs:-?}" "${secs:-?}" "$result"
    if [ "$result" != ok ]; then
        # Where only this script's output survives (a CI run), enough to reproduce: the failure
        # and the reproducer's bytes (`base64 -d > crash; cargo +nightly fuzz run <target> crash`).
        grep -a -m1 -A8 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "logs/$t.log" | sed 's/^/    /' || true
        for f in $(grep -a -o "artifacts/$t/[a-z]*-[0-9a-f]*" "logs/$t.log" | sort -u); do
            if [ -f "$f" ]; then printf '    %s (base64): %s\n' "$f" "$(base64 -w0 "$f")"; fi
        done
    fi
done
exit "$failed"

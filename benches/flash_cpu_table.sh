#!/usr/bin/env bash
# The issue-18 prefill shapes timed by thread CPU time (examples/flash_cpu_time: the best of
# several runs of one thread's on-CPU time), every backend of interest this CPU has, f32 and bf16,
# causal and not: a Markdown table on stdout. For comparing kernels on a machine other work loads
# (criterion's wall-clock numbers there measure the load); the peers table (scripts/peers.sh)
# is the wall-clock one.
#
#   bash benches/flash_cpu_table.sh [BACKENDS...]   # default: avx512bf16 avx2 (those available)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p tessera-benches --example flash_cpu_time
bin=target/release/examples/flash_cpu_time
backends=${*:-avx512bf16 avx2}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(uptime)"
echo
echo "| backend | dtype | shape | causal | tiles | GFLOP/s |"
echo "|---|---|---|---|---|---:|"
for be in $backends; do
  grep -q "$( [ "$be" = avx2 ] && echo avx2 || echo avx512f)" /proc/cpuinfo || continue
  for dt in f32 bf16; do
    for shape in "1024 64 8" "4096 64 3" "4096 128 3"; do
      set -- $shape
      for causal in no causal; do
        line=$("$bin" "$dt" "$1" "$2" rule rule "$3" "$be" "$causal")
        g=$(echo "$line" | sed -E 's/.*: ([0-9.]+) GFLOP.*/\1/')
        t=$(echo "$line" | sed -E 's/.* tiles ([0-9]+x[0-9]+):.*/\1/')
        echo "| $be | $dt | 1x8x$1x$2 | $( [ "$causal" = causal ] && echo yes || echo no) | $t | $g |"
      done
    done
  done
done

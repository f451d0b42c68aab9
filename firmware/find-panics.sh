#!/usr/bin/env bash
# Lists the source lines (with their inlining chain) of every call into a core panic function
# that survives in a firmware program: the places the no-panic proof's link error is about.
#   bash firmware/find-panics.sh [cortex-m4f|riscv32] [release|release-s]
set -euo pipefail
cd "$(dirname "$0")"
program=${1:-cortex-m4f}
profile=${2:-release}
case $program in
  cortex-m4f) target=thumbv7em-none-eabihf ;;
  riscv32) target=riscv32imac-unknown-none-elf ;;
  *) echo "usage: $0 [cortex-m4f|riscv32] [release|release-s]" >&2; exit 2 ;;
esac
cargo build -q --profile "$profile" -p "tessera-firmware-$program" --target "$target" --features find-panics
elf="target/$target/$profile/tessera-firmware-$program"
objdump=$(command -v llvm-objdump || echo "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objdump")
# Call sites: calls into core's panic functions (panicking::*, slice index failures, bounds
# checks, unwrap/expect failures), outside those functions themselves.
"$objdump" -d --no-show-raw-insn "$elf" | python3 find-panics.py |
  sort -u |
  while read -r addr; do
    echo "== 0x$addr"
    llvm-symbolizer --inlining --obj="$elf" "0x$addr" | grep -v '^$' | sed 's/^/   /'
  done

#!/usr/bin/env bash
# Double-precision code in the Cortex-M4F program (single-precision FPU only): soft-float
# routines and libm's f64 functions linked with only the named check's kernel
# (TESSERA_FW_ONLY, as sizes.sh). Writes target/f64.tsv (check, symbols, bytes). Needs
# target/gen from run.sh.
set -euo pipefail
cd "$(dirname "$0")"
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
nm=$(command -v llvm-nm || echo "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-nm")
f64=target/f64.tsv
printf 'check\tsymbols\tbytes\n' > "$f64.tmp"
for check in none flash_f32 flash_bf16 baseline_f32 decode_flash adam_step hyper_adam_tower greedy_decode; do
  TESSERA_FW_ONLY=$check cargo build -q --release -p tessera-firmware-cortex-m4f --target thumbv7em-none-eabihf
  "$nm" --print-size --demangle target/thumbv7em-none-eabihf/release/tessera-firmware-cortex-m4f |
    python3 -c '
import re, sys
check = sys.argv[1]
pat = re.compile(r"__aeabi_(d[a-z0-9]+|[a-z0-9]+2d)$|__[a-z]*(df[0-9]|sfdf|dfsf|sidf|didf|dfsi|dfdi)[0-9]*$|libm::math::(\w+)::(?:\w+::)*(\w+)::h[0-9a-f]+$")
n = size = 0
for line in sys.stdin:
    parts = line.split(None, 3)
    if len(parts) < 4:
        continue
    m = pat.search(parts[3].strip())
    # libm: f64 functions only (the f32 ones end in "f"; the generic helpers serve both).
    if m and not (m.group(4) and (m.group(4).endswith("f") or m.group(3) == "generic")):
        n += 1
        size += int(parts[1], 16)
print(f"{check}\t{n}\t{size}")
' "$check" >> "$f64.tmp"
done
mv "$f64.tmp" "$f64"
cat "$f64"
# Leave the full program built.
cargo build -q --release -p tessera-firmware-cortex-m4f --target thumbv7em-none-eabihf

#!/usr/bin/env bash
# .text bytes each check's kernel adds to each program at each opt level: the program is built
# with TESSERA_FW_ONLY=<check> (every other check a no-op, its code dropped by the linker) and
# compared with TESSERA_FW_ONLY=none. Writes target/sizes.tsv (program, profile, check, bytes).
# Needs target/gen from run.sh. About 40 builds: several minutes.
set -euo pipefail
cd "$(dirname "$0")"
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
checks="none flash_f32 flash_bf16 baseline_f32 decode_flash decode_baseline adam_step hyper_adam_tower greedy_decode self_speculative"
size=$(command -v llvm-size || echo "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-size")
out=target/sizes.tsv
printf 'program\tprofile\tcheck\ttext\n' > "$out.tmp"
for profile in release release-s; do
  for program in cortex-m4f riscv32; do
    case $program in
      cortex-m4f) target=thumbv7em-none-eabihf ;;
      riscv32) target=riscv32imac-unknown-none-elf ;;
    esac
    for check in $checks; do
      TESSERA_FW_ONLY=$check cargo build -q --profile "$profile" -p "tessera-firmware-$program" --target "$target"
      text=$("$size" -A "target/$target/$profile/tessera-firmware-$program" | awk '$1 == ".text" { print $2 }')
      printf '%s\t%s\t%s\t%s\n' "$program" "$profile" "$check" "$text" | tee -a "$out.tmp"
    done
  done
done
mv "$out.tmp" "$out"


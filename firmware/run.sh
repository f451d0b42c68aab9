#!/usr/bin/env bash
# Builds the firmware programs and runs them under QEMU; fails on any mismatch with the host.
#   1. trains a tiny model with the harness and exports it as the blob both programs link;
#   2. runs the application on the host's generic backend: the checksums they must match;
#   3. builds both programs at opt-level 3 and "s" with the no-panic proof (the panic handler
#      calls an undefined symbol: the link fails if any panic path survives);
#   4. runs each under QEMU (-icount shift=0: instruction counts are exact and repeatable).
# QEMU comes from the distribution's packages, unpacked into a cache folder (nothing installed).
# Options: --skip-model (reuse target/gen/model.bin), --out DIR (also save each run's output).
set -euo pipefail
cd "$(dirname "$0")"
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS
gen=target/gen
out_dir=""
skip_model=0
while [ $# -gt 0 ]; do
  case $1 in
    --skip-model) skip_model=1 ;;
    --out) out_dir=$2; shift ;;
    *) echo "usage: $0 [--skip-model] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$gen"

step() { printf '\n==> %s\n' "$*"; }

if [ $skip_model = 0 ] || [ ! -f "$gen/model.bin" ]; then
  step "tiny model: train (300 steps on tinyshakespeare) and export as bf16"
  (cd .. && cargo build --release -q -p tessera-harness)
  tessera=../target/release/tessera
  corpus=../../shared/data/tinyshakespeare.txt
  [ -f "$corpus" ] || { echo "error: $corpus not found (../shared beside the checkout)" >&2; exit 2; }
  "$tessera" layerskip train --quick --corpus "$corpus" --dim 32 --heads 4 --kv-heads 2 --ffn 96 \
    --steps 300 --seed 0 --out "$gen/model.safetensors" --no-progress > "$gen/train.log"
  "$tessera" layerskip export --model "$gen/model.safetensors" --out "$gen/model.bin" --dtype bf16
fi

step "expected checksums: the application on the host's generic backend"
cargo run --release -q -p tessera-firmware-host

step "QEMU (Debian packages, unpacked into a cache folder)"
qemu_root=$(bash qemu.sh)
export LD_LIBRARY_PATH="$qemu_root/usr/lib/x86_64-linux-gnu:$qemu_root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

run_arm() {
  timeout 300 "$qemu_root/usr/bin/qemu-system-arm" -cpu cortex-m4 -machine mps2-an386 -nographic \
    -icount shift=0 -semihosting-config enable=on,target=native -kernel "$1"
}
run_riscv() {
  timeout 300 "$qemu_root/usr/bin/qemu-system-riscv32" -machine virt -cpu rv32 -nographic -bios none \
    -icount shift=0 -semihosting-config enable=on,target=native -kernel "$1"
}

status=0
for profile in release release-s; do
  for program in cortex-m4f riscv32; do
    case $program in
      cortex-m4f) target=thumbv7em-none-eabihf; runner=run_arm ;;
      riscv32) target=riscv32imac-unknown-none-elf; runner=run_riscv ;;
    esac
    step "$program, profile $profile: build with the no-panic proof, run under QEMU"
    if ! cargo build -q --profile "$profile" -p "tessera-firmware-$program" --target "$target"; then
      echo "error: $program ($profile) does not link: a panic path survives (bash find-panics.sh $program $profile lists them)" >&2
      status=1
      continue
    fi
    elf="target/$target/$profile/tessera-firmware-$program"
    log=$(mktemp)
    if $runner "$elf" 2>&1 | tee "$log"; then
      echo "$program ($profile): exit 0"
    else
      echo "error: $program ($profile) failed under QEMU" >&2
      status=1
    fi
    if [ -n "$out_dir" ]; then
      mkdir -p "$out_dir"
      cp "$log" "$out_dir/$program-$profile.txt"
    fi
    rm -f "$log"
  done
done
exit $status

#!/usr/bin/env bash
# The PTX kernels on an NVIDIA GPU (issue 21), in ONE call of at most 10 minutes on a machine with
# a GPU, its driver, Python with PyTorch (and numpy), and no Rust and no network. It runs
# `tessera gpu-check` (every PTX entry point against the CPU kernels and the exact oracle), then
# scripts/gpu_compare.py (PyTorch SDPA's flash, efficient, cuDNN and math backends, and
# FlashAttention if installed, on the same inputs, timed and measured against the same oracle),
# and writes docs/results/gpu.md.
#
# Prepare here (x86-64, Rust, network), then carry the two build outputs:
#   cargo build --release -p tessera-harness --features cuda    # target/release/tessera (no CUDA needed)
#   bash scripts/build-ptx.sh                                    # target/ptx/tessera-sm_{80,90}.ptx
#   bash scripts/gpu-check.sh --dry-run                          # everything that needs no GPU
# On the GPU machine, from the repository root (the device tool's `run`, with
#   carry = ["target/release/tessera", "target/ptx/tessera-sm_90.ptx"], timeout_s = 600):
#   bash scripts/gpu-check.sh
# Results go to docs/results/gpu.md and target/gpu-check/ (gpu-check.json, torch.json, logs,
# inputs); when $OUT is set (the device tool's folder that comes back) they are copied there too:
# copy $OUT/gpu.md over docs/results/gpu.md and commit it with gpu-check.json.
#
# Options: --dry-run (here: checks the binary and PTX, that gpu-check refuses with status 2 when
# there is no GPU, and the report writer on made-up numbers); --quick (N = 256 and 1024 only).
# Environment: TESSERA_BIN, PTX, PYTHON, CHECK_TIMEOUT (s, default 330), TORCH_TIMEOUT (s, 200).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${TESSERA_BIN:-target/release/tessera}
PTX=${PTX:-target/ptx/tessera-sm_90.ptx}
PYTHON=${PYTHON:-python3}
RESULTS=target/gpu-check
MD=docs/results/gpu.md
dry=0
quick=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry=1 ;;
        --quick) quick=(--quick) ;;
        *) echo "usage: bash scripts/gpu-check.sh [--dry-run] [--quick]" >&2; exit 2 ;;
    esac
done
fail() { echo "gpu-check.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || fail "no tessera binary at $BIN (build it: cargo build --release -p tessera-harness --features cuda)"
[ -s "$PTX" ] || fail "no PTX at $PTX (build it: bash scripts/build-ptx.sh)"
command -v "$PYTHON" >/dev/null || fail "no $PYTHON"
mkdir -p "$RESULTS"

if [ "$dry" = 1 ]; then
    echo "==> dry run: tessera gpu-check must refuse with status 2 here (no GPU)"
    "$BIN" gpu-check --quick --ptx "$PTX" >"$RESULTS/dry-run.log" 2>&1
    status=$?
    cat "$RESULTS/dry-run.log"
    [ "$status" = 2 ] || fail "expected exit status 2 without a GPU, got $status"
    if grep -q "built without GPU support" "$RESULTS/dry-run.log"; then
        fail "$BIN was built without --features cuda"
    fi
    echo "==> dry run: the report writer"
    "$PYTHON" scripts/gpu_compare.py --self-test --md "$RESULTS/gpu-dry-run.md" || fail "report writer self-test"
    echo "dry run passed; on the GPU machine: bash scripts/gpu-check.sh"
    exit 0
fi

started=$(date +%s)
echo "==> GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$RESULTS/nvidia-smi.txt"
echo "==> tessera gpu-check (timeout ${CHECK_TIMEOUT:-330} s)"
rm -rf "$RESULTS/inputs"
timeout "${CHECK_TIMEOUT:-330}" "$BIN" gpu-check --ptx "$PTX" "${quick[@]}" \
    --json "$RESULTS/gpu-check.json" --inputs-dir "$RESULTS/inputs" 2>&1 | tee "$RESULTS/gpu-check.log"
check_status=${PIPESTATUS[0]}
echo "tessera gpu-check exit status $check_status after $(( $(date +%s) - started )) s"
echo "==> PyTorch on the same problems (timeout ${TORCH_TIMEOUT:-200} s)"
timeout "${TORCH_TIMEOUT:-200}" "$PYTHON" scripts/gpu_compare.py --check "$RESULTS/gpu-check.json" \
    --check-status "$check_status" --inputs "$RESULTS/inputs" --json "$RESULTS/torch.json" --md "$MD" \
    2>&1 | tee "$RESULTS/torch.log"
torch_status=${PIPESTATUS[0]}
echo "gpu_compare.py exit status $torch_status; $(( $(date +%s) - started )) s in all"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    cp "$MD" "$OUT/gpu.md" 2>/dev/null
    for f in gpu-check.json torch.json gpu-check.log torch.log nvidia-smi.txt; do
        cp "$RESULTS/$f" "$OUT/" 2>/dev/null
    done
    echo "copied the results to $OUT"
fi
[ "$check_status" = 0 ] && [ "$torch_status" = 0 ]

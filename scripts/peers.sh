#!/usr/bin/env bash
# Tessera beside its peers in one go (issue 18): the benches/peers criterion groups (Tessera,
# candle-nn's CPU flash_attn, a two-GEMM attention; peers on one thread), then PyTorch's CPU SDPA
# (scripts/pytorch-sdpa.py, at 1 and 2 threads), then the table: docs/results/peers.{md,json}
# and docs/results/peers-pytorch.{md,json}.
#
#   bash scripts/peers.sh                         # every group (about 15-20 minutes on one Zen 4 core)
#   bash scripts/peers.sh f32_1x8x1024x64         # a criterion filter: only the matching groups
#   PEAK_GFLOPS=116.8 PYTHON=/tmp/venv/bin/python NOTE="quiet machine" bash scripts/peers.sh
#
# PEAK_GFLOPS: one core's FP32 FMA peak for the fraction-of-peak columns; by default the bench's
# own `fma_peak` group (the peak bench's measurement, same run, same load). OUT: where the
# results go (docs/results). PYTHON: an interpreter with torch (optional: without
# it the PyTorch column stays empty). NOTE: printed in bold above the table, followed by the
# machine's load (uptime) before and after the run. Not part of CI (candle takes minutes to build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-docs/results}
LOG=$(mktemp /tmp/peers-bench.XXXXXX.log)
BEFORE=$(uptime)
# The Tessera the bench measures: this commit, "+modified" when kernels/ or harness/ differ from it.
TESSERA_COMMIT=${TESSERA_COMMIT:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- kernels harness || echo "+modified")}
export TESSERA_COMMIT
echo "peers: $BEFORE" >&2

# Peers on one thread: rayon's pool and candle's barrier pool read these when they start.
RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 \
  cargo bench --manifest-path benches/peers/Cargo.toml --bench peers -- "$@" 2>&1 | tee "$LOG"
BENCH_AFTER=$(uptime)

CRITERION=${CARGO_TARGET_DIR:-benches/peers/target}/criterion
# The peak the fractions divide by: PEAK_GFLOPS if given, else the bench's own fma_peak group.
PEAK=${PEAK_GFLOPS:-$(python3 scripts/peers-report.py --peak "$LOG" "$CRITERION" || true)}

TORCH_JSON=$OUT/peers-pytorch.json
if "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" scripts/pytorch-sdpa.py --threads 1,2 --out "$TORCH_JSON" --md $OUT/peers-pytorch.md \
    ${PEAK:+--peak-gflops "$PEAK"} --note "${NOTE:-}"
else
  echo "peers: $PYTHON has no torch: the PyTorch column stays empty (pip install torch)" >&2
  TORCH_JSON=""
fi
AFTER=$(uptime)
NOTE="${NOTE:+$NOTE }Load (uptime): before the bench \`$BEFORE\`, after it \`$BENCH_AFTER\`, after PyTorch \`$AFTER\`."
python3 scripts/peers-report.py "$LOG" "$CRITERION" "$TORCH_JSON" "$OUT" "$NOTE" "${PEAK_GFLOPS:-}"
echo "peers: wrote $OUT/peers.md and $OUT/peers.json (bench log: $LOG)" >&2

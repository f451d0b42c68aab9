#!/usr/bin/env bash
# Builds the GPU kernels (kernels/ptx, feature `cuda` of the kernel crate) into PTX for sm_80 and
# sm_90 and checks each with NVIDIA's `ptxas`: a PTX that ptxas rejects fails this script (and CI).
#
#   bash scripts/build-ptx.sh            # -> target/ptx/tessera-sm_80.ptx, target/ptx/tessera-sm_90.ptx
#   ARCHES="sm_90" bash scripts/build-ptx.sh
#
# Needs: rustup with a nightly toolchain (installed here with rust-src, llvm-bitcode-linker and
# llvm-tools if missing), python3 with venv and pip (ptxas comes from PyPI's
# `nvidia-cuda-nvcc-cu12` wheel, installed once into a cache venv: $TESSERA_CACHE, default
# ~/.cache/tessera). No GPU, no CUDA.
#
# How (docs/gpu.md): rustc's own `nvptx64-nvidia-cuda` target has no prebuilt std here, so
# `-Zbuild-std=core`; the cdylib is linked by `llvm-bitcode-linker`, which must be passed as the
# linker explicitly. Do not put `build-std` in .cargo/config.toml: host builds then fail (E0152).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARCHES=${ARCHES:-"sm_80 sm_90"}
CACHE=${TESSERA_CACHE:-$HOME/.cache/tessera}
NVCC_WHEEL=${NVCC_WHEEL:-nvidia-cuda-nvcc-cu12==12.9.86}
OUT=$ROOT/target/ptx
mkdir -p "$OUT"

echo "==> nightly with rust-src, llvm-bitcode-linker and llvm-tools"
# llvm-tools: the bitcode linker runs `llvm-link`, its own toolchain's from the directory above
# it where that component put one, else the first on PATH; a distribution's older LLVM there
# (Debian's llvm-14) rejects the linker's `--ignore-non-bitcode` and the link fails.
rustup toolchain install nightly --profile minimal \
    --component rust-src,llvm-bitcode-linker,llvm-tools,clippy >/dev/null
sysroot=$(rustc +nightly --print sysroot)
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
linker=$sysroot/lib/rustlib/$host/bin/self-contained/llvm-bitcode-linker
[ -x "$linker" ] || { echo "error: $linker not found (rustup component add llvm-bitcode-linker --toolchain nightly)" >&2; exit 1; }
[ -x "$sysroot/lib/rustlib/$host/bin/llvm-link" ] || { echo "error: the nightly toolchain's llvm-link not found (rustup component add llvm-tools --toolchain nightly)" >&2; exit 1; }

echo "==> ptxas from PyPI ($NVCC_WHEEL) in $CACHE/ptxas-venv"
venv=$CACHE/ptxas-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -m pip show nvidia-cuda-nvcc-cu12 2>/dev/null | grep -q "^Version: ${NVCC_WHEEL#*==}$"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$NVCC_WHEEL"
fi
ptxas=$("$venv/bin/python" -c 'import nvidia.cuda_nvcc, os; print(os.path.join(list(nvidia.cuda_nvcc.__path__)[0], "bin", "ptxas"))')
[ -x "$ptxas" ] || { echo "error: ptxas not found at $ptxas" >&2; exit 1; }
"$ptxas" --version | tail -1

for arch in $ARCHES; do
    echo "==> tessera-ptx for $arch"
    # One target dir per architecture: switching RUSTFLAGS would otherwise rebuild core each time.
    CARGO_TARGET_DIR=$OUT/build-$arch \
    RUSTFLAGS="-C target-cpu=$arch -C linker=$linker" \
        cargo +nightly build --manifest-path kernels/ptx/Cargo.toml --locked --release \
        --target nvptx64-nvidia-cuda -Zbuild-std=core
    if [ "$arch" = "${ARCHES%% *}" ]; then
        echo "==> clippy (nvptx, -D warnings)"
        CARGO_TARGET_DIR=$OUT/build-$arch \
        RUSTFLAGS="-C target-cpu=$arch -C linker=$linker" \
            cargo +nightly clippy --manifest-path kernels/ptx/Cargo.toml --locked --release \
            --target nvptx64-nvidia-cuda -Zbuild-std=core -- -D warnings
    fi
    ptx=$OUT/tessera-$arch.ptx
    cp "$OUT/build-$arch/nvptx64-nvidia-cuda/release/tessera_ptx.ptx" "$ptx"
    entries=$(grep -c '^\.visible \.entry' "$ptx" || true)
    # A trap in the PTX is a panic path the optimiser could not remove (the panic handler traps).
    traps=$(grep -c 'trap;' "$ptx" || true)
    echo "$ptx: $(wc -c <"$ptx") bytes, $entries entry points, $traps trap instructions"
    [ "$entries" -ge 9 ] || { echo "error: expected 9 entry points in $ptx" >&2; exit 1; }
    [ "$traps" -eq 0 ] || { echo "error: $ptx has a panic path (trap)" >&2; exit 1; }
    echo "==> ptxas -arch=$arch"
    "$ptxas" -arch="$arch" "$ptx" -o "$OUT/tessera-$arch.cubin"
    echo "ptxas accepted $ptx"
done
